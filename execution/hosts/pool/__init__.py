"""The warm pool (docs/ARCHITECTURE.md, "Warm pool"): ``actions`` (make, claim, retire), ``refill`` (the task, its
lock), ``refill_queue`` (queueing one refill: the flag file), ``fingerprint`` (what a warm container is made from),
``volumes`` (pool volumes nobody owns)."""
