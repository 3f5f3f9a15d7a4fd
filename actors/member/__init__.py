"""A convention member: the actor system on another host that hosts account actors.

``actor`` holds :class:`~actors.member.actor.MemberAgent`, the member's own actor, which
tells the process that started the member its processes and whether it has joined its
leader (:mod:`apps.member` runs a member). Importing this package imports nothing else.
"""
