"""The cold virtual-media boot and the power poll against a running sushy-emulator, by
sushy (the Python Redfish client Ironic uses), done the way Ironic's redfish-virtual-media
boot interface does them. Run by vs-sushy.sh; reads the same SUSHY_BENCH_* variables as
vs_sushy.rs and prints `sushy <what> <requests per flow> <CPU us per flow>` lines.

Requests are counted where sushy sends them (requests.Session.request); client CPU is
this process's CPU time (time.process_time_ns) around each measured part.
"""

import os
import sys
import time

import requests
import sushy

SENT = 0
_request = requests.Session.request


def _counting_request(self, *args, **kwargs):
    global SENT
    SENT += 1
    return _request(self, *args, **kwargs)


requests.Session.request = _counting_request


def connect(url, user, password):
    # Ironic's defaults: session auth when offered, basic otherwise.
    return sushy.Sushy(url, username=user, password=password, verify=False)


def cd_slot(system):
    """Ironic's slot choice: the first virtual-media member that takes a CD, under the
    system or else its manager."""
    def collections():
        try:
            yield system.virtual_media
        except sushy.exceptions.SushyError:
            pass
        for manager in system.managers:
            try:
                yield manager.virtual_media
            except sushy.exceptions.SushyError:
                pass

    for collection in collections():
        for member in collection.get_members():
            if sushy.VIRTUAL_MEDIA_CD in member.media_types:
                return member
    raise RuntimeError("no virtual-media slot takes a CD")


def main():
    url = os.environ["SUSHY_BENCH_URL"]
    system_path = os.environ["SUSHY_BENCH_SYSTEM"]
    user = os.environ["SUSHY_BENCH_USER"]
    password = os.environ["SUSHY_BENCH_PASSWORD"]
    image = os.environ["SUSHY_BENCH_IMAGE"]
    flows = max(1, int(os.environ.get("SUSHY_BENCH_FLOWS", "10")))
    polls = max(1, int(os.environ.get("SUSHY_BENCH_POLLS", "200")))

    sent = 0
    cpu = 0
    conn = None
    for _ in range(flows):
        before, started = SENT, time.process_time_ns()
        conn = connect(url, user, password)
        system = conn.get_system(system_path)
        slot = cd_slot(system)
        slot.insert_media(image, inserted=True, write_protected=True)
        system.set_system_boot_options(
            sushy.BOOT_SOURCE_TARGET_CD,
            enabled=sushy.BOOT_SOURCE_ENABLED_ONCE,
            mode=sushy.BOOT_SOURCE_MODE_UEFI,
        )
        if system.power_state == sushy.POWER_STATE_ON:
            system.reset_system(sushy.RESET_FORCE_RESTART)
        else:
            system.reset_system(sushy.RESET_ON)
        cpu += time.process_time_ns() - started
        sent += SENT - before
        # Back to an empty slot for the next cold flow (not measured).
        slot.eject_media()
    print(f"sushy cold-flow {sent / flows:.1f} {cpu / flows / 1000:.0f}")

    # Power polls as Ironic's get_power_state does them on a cached connection: the
    # system looked up, then its power state read.
    before, started = SENT, time.process_time_ns()
    for _ in range(polls):
        conn.get_system(system_path).power_state
    cpu = time.process_time_ns() - started
    print(f"sushy power-poll {(SENT - before) / polls:.1f} {cpu / polls / 1000:.0f}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the script to show
        print(f"vs_sushy.py: {e!r}", file=sys.stderr)
        sys.exit(1)
