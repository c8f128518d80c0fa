"""The Maelstrom node, built on the library: the library never imports this.

`handlers.py` has a handler per message type; `wire.py` and `reader.py` are
the RPC plumbing; `forwarding.py` and `leases.py` (the owner's side in
`owner.py`, its updates in `owner_updates.py`, the holder's in `holder.py`,
an update in `update.py`) make a cluster one cache;
`kv.py` reaches Maelstrom's KV services; `cli.py` is the command line.
"""
