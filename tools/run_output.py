"""What a run of one of the plugin's scripts printed, read the way an administrator reads the
process log: its non-blank lines, and the summary on the last one (DESIGN §3). Shared by the
demo and the tests' records of a run, which keep the printed text under different names."""
from __future__ import annotations


class PrintedLines:
    """Mixin for a record of a run; `_printed` names the attribute holding the process log."""
    _printed = "stdout"

    @property
    def lines(self) -> list[str]:
        return [line for line in getattr(self, self._printed).splitlines() if line.strip()]

    @property
    def summary(self) -> str:
        lines = self.lines
        return lines[-1] if lines else ""

    def logged(self, level: str) -> list[str]:
        """The lines logged at `level` ("notice", "warning", …)."""
        return [line for line in self.lines if line.startswith(f"[{level}] ")]
