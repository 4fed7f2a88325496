"""Fault injection against real validator processes on 127.0.0.1 (project issue 15, item 6).

proxy.py    a TCP forwarder placed on every directed validator link (pass, drop, delay, reset)
harness.py  a devnet wired through the proxy, client load with a ledger of acknowledged records,
            kill and partition steps, and the end-of-run checks (same chains, audit, no lost record)
run.py      the long run (`make faults`): python -m tests.faults.run --kills 100 --partitions 20
"""
