"""What the tests share: test doubles for the library (`doubles`), a Maelstrom-style
network of node processes (`net`), Maelstrom's lin-kv workload (`workload`), a
linearizability checker (`linearizability`) and a fuzzer (`fuzz`).
"""
