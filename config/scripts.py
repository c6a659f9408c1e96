"""``scripts:`` of the plan: what an agent says on a call, as a small tree the agent desktop walks.

A script is ``nodes`` (name → a ``say`` text and ``options``: button label → the next node) and
the node it ``start``s at. A queue or a campaign names its script (``script: sales``) and the
desktop shows it with the call's card; ``{caller}``, ``{did}``, ``{queue}`` and, for campaign
calls, the lead's fields (``{name}``, …) are filled in. A node without options ends the script.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import Strict


class ScriptNode(Strict):
    say: str = Field(min_length=1)
    options: dict[str, str] = {}  # button label → next node


class Script(Strict):
    start: str
    nodes: dict[str, ScriptNode] = Field(min_length=1)

    @model_validator(mode="after")
    def _links(self) -> Script:
        if self.start not in self.nodes:
            raise ValueError(f"start {self.start!r} is not one of the nodes ({', '.join(self.nodes)})")
        for name, node in self.nodes.items():
            for label, target in node.options.items():
                if target not in self.nodes:
                    raise ValueError(f"node {name!r}, option {label!r}: no node {target!r}")
        return self
