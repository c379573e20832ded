"""The instance count follows loyalty_worker_instances up and down, and a
configuration change restarts every instance."""

from conftest import converge_workers

testinfra_hosts = ["loyalty-worker-molecule-1"]


def main_pid(host, instance):
    return host.check_output(f"systemctl show -p MainPID --value loyalty-worker@{instance}").strip()


def active(host, instance):
    return host.run(f"systemctl is-active loyalty-worker@{instance}").stdout.strip() == "active"


def enabled(host, instance):
    return host.run(f"systemctl is-enabled loyalty-worker@{instance}").stdout.strip() == "enabled"


def test_scale_up_to_three_restarts_all_on_config_change(host):
    before = {i: main_pid(host, i) for i in ("1", "2")}
    converge_workers(loyalty_worker_instances=3, loyalty_worker_log_level="DEBUG")
    for instance in ("1", "2", "3"):
        assert active(host, instance), instance
        assert enabled(host, instance), instance
    for instance, pid in before.items():
        assert main_pid(host, instance) != pid, f"loyalty-worker@{instance} was not restarted"
    assert 'LOG_LEVEL="DEBUG"' in host.file("/etc/loyalty-worker/loyalty-worker.env").content_string


def test_scale_down_to_one(host):
    converge_workers(loyalty_worker_instances=1)
    assert active(host, "1")
    assert enabled(host, "1")
    for instance in ("2", "3"):
        assert not active(host, instance), instance
        assert not enabled(host, instance), instance
    assert len(host.check_output("pgrep -u loyalty-worker -f loyalty-worker").split()) == 1
