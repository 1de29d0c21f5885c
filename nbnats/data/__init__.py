"""The data layer: payload codecs, frames, units, the server's naming rules."""
