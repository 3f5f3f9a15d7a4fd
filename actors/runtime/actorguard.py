"""No actor created from outside: the admin creates only the engine's own actor classes.

Thespian's admin answers a ``PendingActor`` message — a class given by *name*, which is
how ``ActorSystem.createActor`` works from outside the system — by importing the named
module and forking a process that runs the class. One such frame made a running engine's
admin fork ``http.server.test`` (a web server on every interface), or import a module
dropped into its working directory, which comes first on the import path under
``python -m``. Frame authentication (:mod:`actors.runtime.frameauth`) keeps strangers
out; this guard holds even against a frame with a valid MAC.

:func:`apply` wraps ``GlobalNamesAdmin.h_PendingActor``, the admin's handler for that
message in the pinned Thespian 4.0.1. A request is honoured only if it names, as
``module.Class`` the way Thespian spells it, a class that is *already loaded* in the admin
(its module is in ``sys.modules`` and holds that very class) and that is a subclass of
``EngineActor`` (which declares itself with :func:`admit_subclasses`) or was admitted with
:func:`admit`, and if it carries no source hash (the engine never loads actor sources).
Anything else is answered with Thespian's ``ERROR_Invalid_ActorClass``, counted
(``refused_frames.actor``) and logged before Thespian resolves the name: nothing is
imported, nothing is forked. The allowlist is derived from the classes at the time of the
request, never from a list of strings.

A convention member's admin also creates actors the leader asks for (Thespian forwards
the leader's ``PendingActor`` to the member it picks, under the shared key's MAC): the
same guard decides, and a member narrows it further with :func:`limit_to` to the classes
it hosts, whatever else happens to be loaded in it.
"""

from __future__ import annotations

import sys
from typing import Any

from thespian.system.admin.globalNames import GlobalNamesAdmin
from thespian.system.messages.admin import PendingActorResponse

from actors.runtime.netsafe import refuse
from actors.runtime.thespian_fixes import require_pinned_thespian

__all__ = ["admit", "admit_subclasses", "apply", "creatable", "limit_to"]

_original_h_pending_actor = GlobalNamesAdmin.h_PendingActor
_admitted: set[type] = set()
_roots: set[type] = set()
_limit: frozenset[type] | None = None  # limit_to(): only these, of the admitted


def admit(cls: type) -> None:
    """Let the admin create ``cls`` too (for an actor system that is not an engine's).

    Call it before the actor system starts: the admin inherits the allowlist when it is
    forked.
    """
    _admitted.add(cls)


def admit_subclasses(root: type) -> None:
    """Let the admin create every subclass of ``root`` (``EngineActor`` declares itself)."""
    _roots.add(root)


def limit_to(*classes: type) -> None:
    """Let the admin create only these of the classes it would create (a member's hosts).

    Narrows, never widens: a class must still be admitted. Call it before the actor system
    starts: the admin inherits the limit when it is forked.
    """
    global _limit
    _limit = frozenset(classes)


def creatable() -> dict[str, type]:
    """The classes the admin creates, by the ``module.Class`` name Thespian sends."""
    found: list[type] = list(_admitted)
    stack: list[type] = list(_roots)
    sub: type
    while stack:
        for sub in stack.pop().__subclasses__():
            found.append(sub)
            stack.append(sub)
    if _limit is not None:
        found = [c for c in found if c in _limit]
    return {f"{c.__module__}.{c.__name__}": c for c in found}


def _allowed(name: object, source_hash: object) -> bool:
    if not isinstance(name, str) or source_hash is not None:
        return False
    cls = creatable().get(name)
    if cls is None:
        return False
    # Thespian resolves the name with import_module + getattr: it must find this class
    # in a module already imported, or it would import something.
    module = sys.modules.get(cls.__module__)
    return module is not None and getattr(module, cls.__name__, None) is cls


def _h_pending_actor(admin: Any, envelope: Any) -> Any:
    msg = envelope.message
    name = getattr(msg, "actorClassName", None)
    if _allowed(name, getattr(msg, "sourceHash", None)):
        return _original_h_pending_actor(admin, envelope)
    refuse(
        "actor",
        f"it asks the admin for an actor of class {name!r}, not one of this engine's",
        peer=f"actor {envelope.sender}",
    )
    admin._sendPendingActorResponse(
        envelope,
        None,
        errorCode=PendingActorResponse.ERROR_Invalid_ActorClass,
        errorStr="not an actor class of this engine",
    )
    return True


def apply() -> None:
    """Install the guard (idempotent); refuse to patch a Thespian it was not written for."""
    require_pinned_thespian(
        "actors.runtime.actorguard",
        "GlobalNamesAdmin.h_PendingActor and AdminCore._sendPendingActorResponse",
    )
    GlobalNamesAdmin.h_PendingActor = _h_pending_actor
