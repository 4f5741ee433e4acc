"""A character-level JSON prefix checker, so a language model's decoding can be held to JSON.

Why: a planner model must answer with a JSON list. Greedy decoding that only ever picks a token
keeping the text a valid JSON *prefix* cannot wander into prose, and stops the moment the list
closes. This is the syntax only; the plan's meaning (known actions, parameter bounds) is checked
afterwards by ``avalign.actions.schema.validate_plan``, whatever the decoding did.

The checker is a small pushdown automaton: :meth:`JsonPrefix.feed` advances it and answers
whether the text so far can still be completed into valid JSON; :meth:`JsonPrefix.copy` lets a
decoder try a candidate token without committing to it. Bounds (nesting depth, string and number
length, runs of whitespace) keep a weak model from running in circles inside one value.
"""

from __future__ import annotations

_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_ESCAPES = '"\\/bfnrt'

# modes
_START, _VALUE, _VALUE_OR_END, _KEY, _KEY_OR_END, _COLON, _AFTER, _STRING, _ESCAPE, _UNICODE, \
    _NUMBER, _LITERAL, _DONE = range(13)
# number sub-states: which characters may come next
_N_SIGN, _N_ZERO, _N_INT, _N_DOT, _N_FRAC, _N_E, _N_ESIGN, _N_EXP = range(8)
_N_COMPLETE = {_N_ZERO, _N_INT, _N_FRAC, _N_EXP}


class JsonPrefix:
    """Is the text fed so far a prefix of one JSON value (an array, or an object, at top level)?

    ``top`` is the top-level container (``"["`` or ``"{"``); with ``objects_in_top`` every
    element of a top-level array must be an object (a plan is a list of step objects).
    """

    __slots__ = ("top", "objects_in_top", "max_depth", "max_string", "max_number", "max_space", "stack",
                 "mode", "string_is_key", "string_len", "unicode_left", "number_state", "number_len",
                 "literal_left", "space_run", "valid")

    def __init__(self, *, top: str = "[", objects_in_top: bool = True, max_depth: int = 6,
                 max_string: int = 64, max_number: int = 24, max_space: int = 8) -> None:
        if top not in "[{" or len(top) != 1:
            raise ValueError(f"top must be '[' or '{{', got {top!r}")
        self.top = top
        self.objects_in_top = objects_in_top
        self.max_depth = max_depth
        self.max_string = max_string
        self.max_number = max_number
        self.max_space = max_space
        self.space_run = 0
        self.stack: list[str] = []
        self.mode = _START
        self.string_is_key = False
        self.string_len = 0
        self.unicode_left = 0
        self.number_state = _N_INT
        self.number_len = 0
        self.literal_left = ""
        self.valid = True

    # -- public ------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """The top-level value is complete: nothing more may follow."""
        return self.valid and self.mode == _DONE

    def copy(self) -> "JsonPrefix":
        other = JsonPrefix.__new__(JsonPrefix)
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        other.stack = list(self.stack)
        return other

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False (and stays False) once it can no longer be JSON."""
        for ch in text:
            if not self.valid:
                return False
            self.valid = self._step(ch)
        return self.valid

    def accepts(self, text: str) -> bool:
        """Would ``text`` keep the prefix valid? (Does not change this checker.)"""
        return self.copy().feed(text)

    # -- automaton -----------------------------------------------------------------------------
    def _step(self, ch: str) -> bool:
        mode = self.mode
        if mode == _STRING:
            return self._string_char(ch)
        if mode == _ESCAPE:
            if ch == "u":
                self.mode, self.unicode_left = _UNICODE, 4
            elif ch in _ESCAPES:
                self.mode = _STRING
            else:
                return False
            return True
        if mode == _UNICODE:
            if ch not in _HEX:
                return False
            self.unicode_left -= 1
            if self.unicode_left == 0:
                self.mode = _STRING
            return True
        if mode == _NUMBER:
            nxt = self._number_next(ch)
            if nxt is not None:
                self.number_state, self.number_len = nxt, self.number_len + 1
                return self.number_len <= self.max_number
            if self.number_state not in _N_COMPLETE:
                return False
            self._value_finished()
            return self._step(ch)  # the terminator belongs to what follows the number
        if mode == _LITERAL:
            if ch != self.literal_left[0]:
                return False
            self.literal_left = self.literal_left[1:]
            if not self.literal_left:
                self._value_finished()
            return True
        if ch in _WS:  # between tokens, and after the end; a bounded run
            self.space_run += 1
            return self.space_run <= self.max_space
        self.space_run = 0
        if mode == _START:
            if ch != self.top:
                return False
            return self._open(ch)
        if mode == _DONE:
            return False
        if mode in (_VALUE, _VALUE_OR_END):
            if mode == _VALUE_OR_END and ch == "]":
                return self._close("[")
            return self._value_start(ch)
        if mode in (_KEY, _KEY_OR_END):
            if mode == _KEY_OR_END and ch == "}":
                return self._close("{")
            if ch != '"':
                return False
            self.mode, self.string_is_key, self.string_len = _STRING, True, 0
            return True
        if mode == _COLON:
            if ch != ":":
                return False
            self.mode = _VALUE
            return True
        if mode == _AFTER:
            container = self.stack[-1]
            if ch == ",":
                self.mode = _VALUE if container == "[" else _KEY
                return True
            if ch in "]}":
                return self._close("[" if ch == "]" else "{")
            return False
        return False

    def _value_start(self, ch: str) -> bool:
        in_top_array = len(self.stack) == 1 and self.stack[0] == "["
        if self.objects_in_top and in_top_array and ch != "{":
            return False
        if ch in "[{":
            return self._open(ch)
        if ch == '"':
            self.mode, self.string_is_key, self.string_len = _STRING, False, 0
            return True
        if ch == "-" or ch in _DIGITS:
            self.mode, self.number_len = _NUMBER, 1
            self.number_state = _N_SIGN if ch == "-" else (_N_ZERO if ch == "0" else _N_INT)
            return True
        for word in ("true", "false", "null"):
            if ch == word[0]:
                self.mode, self.literal_left = _LITERAL, word[1:]
                return True
        return False

    def _open(self, ch: str) -> bool:
        if len(self.stack) >= self.max_depth:
            return False
        self.stack.append(ch)
        self.mode = _VALUE_OR_END if ch == "[" else _KEY_OR_END
        return True

    def _close(self, container: str) -> bool:
        if not self.stack or self.stack[-1] != container:
            return False
        self.stack.pop()
        self._value_finished()
        return True

    def _value_finished(self) -> None:
        self.mode = _AFTER if self.stack else _DONE

    def _string_char(self, ch: str) -> bool:
        if ch == '"':
            if self.string_is_key:
                self.mode = _COLON
            else:
                self._value_finished()
            return True
        if ch == "\\":
            self.mode = _ESCAPE
            return True
        if ord(ch) < 0x20:  # control characters must be escaped inside JSON strings
            return False
        self.string_len += 1
        return self.string_len <= self.max_string

    def _number_next(self, ch: str) -> int | None:
        """The number sub-state after ``ch``, or None when ``ch`` is not part of the number."""
        s = self.number_state
        if ch in _DIGITS:
            return {_N_SIGN: _N_ZERO if ch == "0" else _N_INT, _N_INT: _N_INT, _N_DOT: _N_FRAC,
                    _N_FRAC: _N_FRAC, _N_E: _N_EXP, _N_ESIGN: _N_EXP, _N_EXP: _N_EXP}.get(s)
        if ch == ".":
            return _N_DOT if s in (_N_ZERO, _N_INT) else None
        if ch in "eE":
            return _N_E if s in (_N_ZERO, _N_INT, _N_FRAC) else None
        if ch in "+-":
            return _N_ESIGN if s == _N_E else None
        return None


def is_json_prefix(text: str, **options) -> bool:
    """Convenience: can ``text`` still be completed into the JSON value ``JsonPrefix`` expects?"""
    return JsonPrefix(**options).feed(text)
