"""A convention member: ``python -m apps.member`` (``wae-member``, ``scripts/member``).

``run`` starts, watches and stops one member's actor system (:class:`apps.member.run.Member`);
``__main__`` is the command. Importing this package imports neither.
"""
