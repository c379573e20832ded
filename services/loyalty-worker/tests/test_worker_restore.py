"""The worker while Redis is restored from a backup (docs/backups.md).

A real redis-server with append-only persistence is backed up the way the
role redis_backup does it (the AOF directory copied while no rewrite runs),
then restored: stopped, the directory put back, started again and slowed
down while loading. The worker pauses (it retries, stays alive, awards
nothing), resumes by itself once the data is loaded, and a transaction
awarded before the backup that is queued again is not awarded twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import redis
from worker_helpers import WorkerProcess, queue, settled, user_state, wait_until, worker_env

FILLER_KEYS = 3000
LOAD_DELAY_US = 1500  # per key: about 4.5 s of LOADING
USERS = (1, 2, 3)


def states(client: redis.Redis) -> dict[int, dict[str, int]]:
    return {u: user_state(client, u) for u in USERS}


def test_worker_pauses_while_redis_loads_a_restored_backup_and_resumes(
    kit: Any, tmp_path: Path
) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    server = kit.AofRedis(data, kit.free_port())
    server.start()
    wait_until(lambda: server.state() == "data", timeout=10)
    client = server.client()
    for i in range(150):
        queue(client, f"tx-{i}", user_id=USERS[i % 3])
    worker = WorkerProcess(worker_env(server.url, WORKER_BATCH_SIZE="20"), tmp_path / "w.log")
    try:
        worker.wait_for(r"ready consumer=")
        wait_until(lambda: settled(client), timeout=20)
        # The backup: filler in the RDB base (where key-load-delay applies),
        # then the AOF directory copied with rewrites paused.
        client.mset({f"filler:{i}": "x" for i in range(FILLER_KEYS)})
        client.bgrewriteaof()
        wait_until(lambda: not server.rewriting(client), timeout=10)
        at_backup = states(client)
        server.backup(tmp_path / "backup")
        assert sum(s["transactions"] for s in at_backup.values()) == 150
        # Awarded after the backup: lost with the restore.
        for i in range(150, 180):
            queue(client, f"tx-{i}", user_id=USERS[i % 3])
        wait_until(lambda: settled(client), timeout=20)
        client.close()

        # The restore: stopped, the backup's AOF directory put back, started
        # slowed down and answering between small steps of the load.
        awarded_before = worker.count("awarded transaction_id")
        server.restore(tmp_path / "backup", LOAD_DELAY_US)
        wait_until(lambda: server.state() == "loading", timeout=10)
        worker.wait_for(r"redis unreachable", timeout=10)
        paused = 0
        while server.state() == "loading":
            # Paused: alive, retrying, awarding nothing.
            assert worker.process.poll() is None
            assert worker.count("awarded transaction_id") == awarded_before
            paused += 1
            time.sleep(0.3)
        assert paused >= 3, paused
        worker.wait_for(r"reconnected to redis", timeout=15)

        client = server.client()
        assert states(client) == at_backup
        # tx-3 was awarded before the backup: queued again, it is skipped;
        # tx-new is awarded once.
        queue(client, "tx-3", user_id=USERS[0])
        queue(client, "tx-new", user_id=USERS[1])
        wait_until(lambda: settled(client), timeout=20)
        after = states(client)
        assert after[USERS[0]] == at_backup[USERS[0]]
        assert after[USERS[1]]["transactions"] == at_backup[USERS[1]]["transactions"] + 1
        assert after[USERS[2]] == at_backup[USERS[2]]
        assert worker.count(r"duplicate transaction_id=tx-3 .* already awarded") == 1
        assert "Traceback" not in worker.log()
        assert worker.stop() == 0
    finally:
        worker.cleanup()
        client.close()
        server.stop()
