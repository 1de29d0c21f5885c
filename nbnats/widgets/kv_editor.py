"""The KV editor (ipywidgets) over :mod:`nbnats.kv`; the watch table is :mod:`nbnats.widgets.kv_watch`.

It lists keys a page at a time, edits values as pretty JSON or text, saves
with compare-and-set (someone else's change is a conflict, never
overwritten), adds and deletes keys, shows a key's history and reverts it.
The live key index (:mod:`nbnats.widgets.kv_keys`) follows everyone's
changes, so the filter never waits for the server; the view redraws at most
ten times a second, only when something changed.

Once a key is being edited, a newer revision written by someone else is
shown as "changed by someone else" and never becomes the compare-and-set
base silently; a value longer than the editor holds is shown read-only,
never saved truncated; a save whose outcome is unknown (a timeout) reads the
key back before it says saved or conflict.

>>> kv.editor()            # doctest: +SKIP
>>> kv.watch().widget      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from html import escape
from typing import Any

from nbnats.data import validate
from nbnats.data.payload import encode
from nbnats.errors import Conflict, NatsError, NotFound, Timeout, ValidationError
from nbnats.kv.frame import Entry, preview
from nbnats.runtime import loop
from nbnats.widgets.kv_keys import KeyIndex, natural_key  # noqa: F401  (natural_key: re-exported)
from nbnats.widgets.kv_pane import MAX_TEXT, EditorLayout, from_text, to_text  # noqa: F401
from nbnats.widgets.kv_watch import KVWatchView  # noqa: F401  (KVWatch.widget imports it from here)

REFRESH = 0.1       # seconds: the ≤ 10 Hz redraw cap
# Status colours: JupyterLab's theme variables, so the dark theme shows them too.
ERROR, WARN, DONE, NEWS, TEXT = (f"var(--jp-{name},currentColor)" for name in (
    "error-color1", "warn-color1", "success-color1", "brand-color1", "content-font-color1"))


class KVEditor(EditorLayout):
    """An editor bound to a :class:`~nbnats.kv.KV`; see :meth:`KV.editor`.

    State for code and tests: ``key_list`` (Select of the page), ``key_box``,
    ``value_box``, ``status`` (HTML), ``loaded`` (the entry being edited, the
    compare-and-set base), ``edited`` (the value box differs from it),
    ``theirs`` (a newer revision someone else wrote while editing),
    ``conflict`` (the newer entry after a refused save), ``page``,
    ``caught_up`` (the live index has every key), ``open_seconds``.
    """

    def __init__(self, kv, page_size: int = 50):
        started = time.perf_counter()
        self.kv = kv
        self.conn = kv.conn
        self.page_size = max(1, int(page_size))
        self.page = 0
        self._lock = threading.RLock()
        self.index = KeyIndex(kv, self._changed)
        self._cache: dict[str, Entry] = {}
        self._visible: list[str] = []
        self._dirty = False
        self._busy = False
        self._saving = False
        self._history_due = False
        self._warned = 0                                     # the newer revision last warned about
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        self._quiet = False
        self.loaded: Entry | None = None
        self.kind = "text"
        self._loaded_text = ""
        self.edited = False
        self.theirs: Entry | None = None
        self.conflict: Entry | None = None
        self.renders = 0
        self.error: str | None = None
        self._build()
        self._wire()
        loop.run(self._open(), 30, f"opening the editor on {kv.bucket!r}")
        self.conn.listeners.append(self)
        self.render()
        self.open_seconds = time.perf_counter() - started
        loop.call_soon(self._tick)

    def _wire(self) -> None:
        self.filter.observe(lambda _: self._act(self._refilter), names="value")
        self.value_box.observe(self._on_typed, names="value")
        self.show_deleted.observe(lambda _: self._act(self._refilter), names="value")
        self.prev_button.on_click(lambda _: self._act(self._turn, -1))
        self.next_button.on_click(lambda _: self._act(self._turn, 1))
        self.key_list.observe(self._on_select, names="value")
        self.save_button.on_click(lambda _: self._act(self.save))
        self.add_button.on_click(lambda _: self._act(self.add))
        self.delete_button.on_click(lambda _: self._act(self.delete))
        self.reload_button.on_click(lambda _: self._act(self.reload))
        self.overwrite_button.on_click(lambda _: self._act(self.save, True))
        self.history_button.observe(lambda _: self._act(self._toggle_history), names="value")
        self.revert_button.on_click(lambda _: self._act(self.revert))

    # -- loop thread: opening, the live index, refreshing ---------------------
    async def _open(self) -> None:
        await self.index.list()
        await self._refresh(render=False)      # the first page before the index floods the loop
        await self.index.follow()              # headers only: values are fetched per page

    def _changed(self) -> None:
        self._dirty = True

    @property
    def caught_up(self) -> bool:
        """True once the live index holds every key's newest revision."""
        return self.index.caught_up

    @property
    def last_change(self) -> tuple[str, int, str] | None:
        """(key, revision, operation) of the latest change made after opening, by anyone."""
        return self.index.last_change

    def _tick(self) -> None:
        if self._stopped:
            return
        if self._dirty and not self._busy:
            self._busy = True
            loop.get_loop().create_task(self._refresh())
        self._timer = loop.get_loop().call_later(REFRESH, self._tick)

    async def _refresh(self, render: bool = True) -> None:
        """Fetch values that are missing or stale on this page (one gather), then redraw."""
        try:
            self._dirty = False
            keys = self.page_keys()
            newest = self.index.revision
            stale = [k for k in keys if k not in self._cache or (newest(k) or 0) > self._cache[k].revision]
            if self.loaded is not None and self.loaded.key not in keys:
                if (newest(self.loaded.key) or 0) > self.loaded.revision:
                    stale.append(self.loaded.key)
            if stale:
                got = await asyncio.gather(*(self.kv.read_entry(k) for k in stale), return_exceptions=True)
                for k, e in zip(stale, got):
                    if isinstance(e, Entry):
                        self._cache[k] = e
            if render:
                self.render()
            if self._history_due and self.history_button.value and self.loaded is not None:
                self._history_due = False
                self._fill_history(await self.kv.read_history(self.loaded.key))
        except Exception as exc:          # a redraw must never kill the timer
            self.error = f"refresh failed: {exc}"
        finally:
            self._busy = False

    # -- the key list ---------------------------------------------------------
    def all_keys(self) -> list[str]:
        """Every key the list can show (deleted ones only with the checkbox), naturally sorted."""
        return self.index.keys(self.show_deleted.value)

    def filtered_keys(self) -> list[str]:
        """The keys that match the filter box (from the index: no round trip)."""
        return self.index.matching(self.filter.value.strip(), self.show_deleted.value)

    def page_keys(self) -> list[str]:
        """The keys on the current page."""
        keys = self.filtered_keys()
        pages = max(1, -(-len(keys) // self.page_size))
        self.page = min(max(self.page, 0), pages - 1)
        return keys[self.page * self.page_size:(self.page + 1) * self.page_size]

    # -- drawing (either thread) -------------------------------------------------
    def render(self) -> None:
        """Redraw the header, the page of keys and any live notice about the key being edited."""
        with self._lock:
            self.renders += 1
            keys = self.filtered_keys()
            total = len(keys)
            pages = max(1, -(-total // self.page_size))
            page = self.page_keys()
            self._visible = page
            state = "following live" if self.caught_up else "indexing…"
            if not self.conn.connected:
                state = f"<span style='color:{ERROR}'>disconnected — reconnecting</span>"
            last = ""
            if self.last_change:
                k, rev, op = self.last_change
                last = f" · last change: {escape(k)} rev {rev} {op}"
            n = len(self.all_keys())
            self.header.value = (f"<b>KV {escape(self.kv.bucket)}</b> · {n:,} key{'s' if n != 1 else ''} · "
                                 f"history {self.kv.history_depth} · {state}{last}")
            self.page_label.value = f"&nbsp;page {self.page + 1} / {pages} · {total:,} shown&nbsp;"
            options = []
            for k in page:
                e = self._cache.get(k)
                if e is None:
                    label = k
                elif e.deleted:
                    label = f"{k}   ✗ {e.operation.lower()}"
                else:
                    label = f"{k}   = {preview(e.value, 50)}"
                options.append((label, k))
            if tuple(options) != tuple(self.key_list.options):
                keep = self.key_list.value
                self._quiet = True
                try:
                    self.key_list.options = options
                    self.key_list.value = keep if keep in page else None
                finally:
                    self._quiet = False
            self._follow_loaded()

    def _follow_loaded(self) -> None:
        """Someone else changed the key being edited: reload it, or warn if it has unsaved edits."""
        e = self.loaded
        if e is None or self._saving:
            return
        newer = self._cache.get(e.key)
        if newer is None or newer.revision <= e.revision:
            return
        if not self.edited:
            self._show(newer)
            self._say(f"updated live: another client wrote revision {newer.revision}", NEWS)
        elif self._warned != newer.revision:          # once per change, so a conflict message stays
            self._warned = newer.revision
            self.theirs = newer                        # shown, never adopted: the CAS base stays e.revision
            self._history_due = self._dirty = True     # the history shows their revision too
            what = "deleted it" if newer.deleted else f"wrote revision {newer.revision}"
            self._say(f"⚠ changed by someone else: another client {what} while you edit revision "
                      f"{e.revision}; your edit stays based on revision {e.revision}, so Save will report a "
                      "conflict (Reload takes theirs)", WARN)

    def _on_typed(self, change) -> None:
        if change["new"] != self._loaded_text:
            self.edited = True                         # stays set until a revision is loaded again

    def _say(self, text: str, color: str = TEXT) -> None:
        self.status.value = f"<span style='color:{color}'>{escape(text)}</span>"

    def _show(self, entry: Entry | None) -> None:
        """Put an entry in the edit pane (None clears it for a new key)."""
        self.loaded = entry
        self.conflict = self.theirs = None
        self._warned = 0
        self.overwrite_button.layout.display = "none"
        if entry is None:
            self._loaded_text, self.kind = "", "text"
            self.key_box.value, self.value_box.value, self.info.value = "", "", ""
            self.edited = False
            return
        text, self.kind = to_text(entry) if not entry.deleted else ("", "text")
        if len(text) > MAX_TEXT:
            text, self.kind = f"<{len(text):,} characters: too long to edit here>", "too long"
        self.key_box.value = entry.key
        self._loaded_text = text
        self.value_box.value = text
        self.value_box.disabled = self.kind in ("bytes", "too long")
        self.edited = False
        when = entry.created.strftime("%Y-%m-%d %H:%M:%S UTC") if entry.created is not None else ""
        state = f" · <b style='color:{ERROR}'>{entry.operation}</b> (Save restores it)" if entry.deleted else ""
        self.info.value = (f"revision <b>{entry.revision}</b> · {when} · {len(entry.raw):,} bytes · "
                           f"{self.kind}{state}")
        if self.history_button.value:
            if loop.in_loop_thread():
                self._history_due = True        # the refresh coroutine reads it next
            else:
                self._fill_history(self.kv.history(entry.key))

    # -- actions (kernel thread) ---------------------------------------------------
    def _act(self, fn, *args) -> None:
        """Run a button's action; errors land in the status line, never as a traceback."""
        try:
            fn(*args)
            self.error = None
        except NatsError as exc:
            self.error = str(exc)
            self._say(f"✗ {exc}", ERROR)

    def _on_select(self, change) -> None:
        if self._quiet or change["new"] is None:
            return
        self._act(self.select, change["new"])

    def select(self, key: str) -> Entry | None:
        """Load ``key`` into the edit pane (what clicking it in the list does).

        >>> ed.select("user.123").revision   # doctest: +SKIP
        4
        """
        entry = self.kv.entry(key)
        self._cache[key] = entry
        self._show(entry)
        self._say("")
        return entry

    def reload(self) -> None:
        """Discard edits and load the key's current revision.

        >>> ed.reload()   # doctest: +SKIP
        """
        if self.loaded is not None:
            self.select(self.loaded.key)
            self._say(f"reloaded revision {self.loaded.revision}")

    def save(self, overwrite: bool = False) -> int | None:
        """Save the edit with compare-and-set against the revision that was loaded.

        A concurrent change by someone else shows as a conflict (nothing is
        written); ``overwrite=True`` (the "Overwrite theirs" button) saves over it.

        >>> ed.value_box.value = '{"name": "ada"}'; ed.save()   # doctest: +SKIP
        5
        """
        e = self.loaded
        if e is None:
            raise ValidationError("no key is loaded", "pick a key in the list, or type a new key and press Add")
        if self.key_box.value.strip() != e.key:
            raise ValidationError(f"the key box says {self.key_box.value.strip()!r} but {e.key!r} is loaded",
                                  "press Add to create a new key, or Reload")
        if self.kind == "bytes":
            raise ValidationError(f"{e.key!r} holds binary bytes, which this editor does not change",
                                  "write it from Python with kv.put")
        if self.kind == "too long":
            raise ValidationError(f"the value of {e.key!r} has {len(e.raw):,} bytes, more than this editor "
                                  f"holds ({MAX_TEXT:,} characters), so saving here would cut it short",
                                  "change it from Python with kv.update")
        value = from_text(self.value_box.value, self.kind)
        last = self.conflict.revision if overwrite and self.conflict is not None else e.revision
        self._saving = True
        try:
            try:
                rev = self.kv.update(e.key, value, last=last)
            except Timeout:
                rev = self.settle_unknown_save(value, last)
            except Conflict as exc:
                self._refused(exc.what, getattr(exc, "current", None))
                return None
            if rev is not None:
                self._adopt(e.key, rev)
                self._say(f"✓ saved as revision {rev}", DONE)
            return rev
        finally:
            self._saving = False

    def settle_unknown_save(self, value: Any, last: int) -> int | None:
        """After a save nobody confirmed: read the key back and say what happened.

        Returns the revision when the value is stored; None (with a conflict
        or a "not stored" line in ``status``) when it is not.

        >>> ed.settle_unknown_save({"mode": "mine"}, last=4)   # doctest: +SKIP
        5
        """
        key = self.loaded.key
        try:
            now = self.kv.entry(key)
        except NotFound:
            now = None
        if now is not None and now.revision > last and not now.deleted and now.raw == encode(value):
            return now.revision
        if now is not None and now.revision == last:
            self.error = "the save was not confirmed and did not happen"
            self._say(f"✗ the server did not confirm the save, and {key!r} is still at revision {last}: "
                      "nothing was stored. Save again.", ERROR)
            return None
        what = f"key {key!r} changed since revision {last}: " + (
            "it no longer exists" if now is None else
            f"it is {'deleted' if now.deleted else 'now'} at revision {now.revision}")
        self._refused(what, now)
        return None

    def _refused(self, what: str, current: Entry | None) -> None:
        self.conflict = current
        self.overwrite_button.layout.display = "" if current is not None else "none"
        theirs = ""
        if current is not None:
            theirs = " · theirs: " + ("(deleted)" if current.deleted else preview(current.value, 80))
        self.error = f"conflict: {what}"
        self._say(f"✗ conflict — {what}; your edit was NOT saved{theirs}. "
                  "Reload to take theirs, or Overwrite theirs.", ERROR)

    def _adopt(self, key: str, rev: int) -> None:
        """After our own write: load it without a round of live notices."""
        try:
            entry = self.kv.entry(key)
        except NotFound:
            entry = None
        if entry is not None:
            self._cache[key] = entry
            self._show(entry)
        self.index.version += 1
        self._dirty = True

    def add(self) -> int:
        """Create the key typed in the key box with the value box's content (refused if it exists).

        >>> ed.key_box.value, ed.value_box.value = "user.9", "{}"; ed.add()   # doctest: +SKIP
        """
        key = self.key_box.value.strip()
        validate.key(key)
        value = from_text(self.value_box.value, "text")
        rev = self.kv.create(key, value)
        self._adopt(key, rev)
        self._say(f"✓ added {key!r} as revision {rev}", DONE)
        return rev

    def delete(self) -> int:
        """Delete the loaded key (compare-and-set: refused if someone changed it meanwhile).

        >>> ed.select("user.9"); ed.delete()   # doctest: +SKIP
        """
        e = self.loaded
        if e is None:
            raise ValidationError("no key is loaded", "pick a key in the list first")
        rev = self.kv.delete(e.key, last=e.revision)
        self._adopt(e.key, rev)
        self._say(f"✓ deleted {e.key!r} (revision {rev}); History → Revert brings it back", DONE)
        return rev

    def _toggle_history(self) -> None:
        self.history_box.layout.display = "" if self.history_button.value else "none"
        if self.history_button.value and self.loaded is not None:
            self._fill_history(self.kv.history(self.loaded.key))

    def history(self):
        """The loaded key's history as a DataFrame (and shown under History).

        >>> ed.history()[["revision", "operation"]]   # doctest: +SKIP
        """
        if self.loaded is None:
            raise ValidationError("no key is loaded", "pick a key in the list first")
        self.history_button.value = True
        return self.kv.history(self.loaded.key)

    def revert(self, revision: int | None = None) -> int:
        """Make an earlier revision current again (compare-and-set against the loaded one).

        >>> ed.revert(2)   # doctest: +SKIP
        """
        e = self.loaded
        if e is None:
            raise ValidationError("no key is loaded", "pick a key in the list first")
        revision = revision if revision is not None else self.revisions.value
        if revision is None:
            raise ValidationError(f"{e.key!r} has no earlier revision to revert to", "pick a revision under History")
        rev = self.kv.revert(e.key, int(revision), last=e.revision)
        self._adopt(e.key, rev)
        self._say(f"✓ reverted {e.key!r} to revision {revision} (now revision {rev})", DONE)
        return rev

    def _refilter(self) -> None:
        """A keystroke in the filter: redraw from the index now; values of the new page follow on the timer."""
        self.page = 0
        self.render()
        self._dirty = True

    def _turn(self, step: int) -> None:
        self.page += step
        self._refresh_now()

    def _refresh_now(self) -> None:
        loop.run(self._refresh(), 15, "refreshing the editor")

    # -- connection events and closing ---------------------------------------------
    def _disconnected(self, at: float) -> None:
        self._dirty = True

    def _reconnected(self, since: float | None, at: float) -> None:
        # The live index catches up once its consumer resets (a few heartbeats); re-read the page now.
        self._cache = {}
        self._dirty = True

    def _closing(self) -> None:
        self._stopped = True

    def _closed(self) -> None:
        self._stopped = True

    @property
    def running(self) -> bool:
        """True while the editor follows changes (until ``stop()`` or its connection closes)."""
        return not self._stopped

    def stop(self) -> None:
        """Stop following changes (the widget stays on screen, frozen).

        >>> ed.stop()   # doctest: +SKIP
        """
        self._stopped = True
        if self._timer is not None:
            loop.call_soon(self._timer.cancel)
        try:
            loop.run(_quietly(self.index.stop()), 5, "stopping the editor's watch")
        except NatsError:
            pass
        if self in self.conn.listeners:
            self.conn.listeners.remove(self)

    def close(self) -> None:
        """Stop following and remove the widget."""
        self.stop()
        super().close()


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:
        pass


__all__ = ["MAX_TEXT", "KVEditor", "KVWatchView", "from_text", "natural_key", "to_text"]
