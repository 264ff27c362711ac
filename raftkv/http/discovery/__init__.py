"""A cluster that forms itself (``RAFT_BOOTSTRAP_EXPECT``) and members that
move (rejoin by identity): :mod:`.plan` decides, :mod:`.seeker` asks the
other nodes, :mod:`.routes` answers them. docs/disks.md tells the story.
"""
