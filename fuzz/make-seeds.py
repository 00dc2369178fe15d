#!/usr/bin/env python3
"""Writes the checked-in seed inputs (fuzz/corpus/<target>/seed-*).

IPMI seeds come from the recorded RMCP+ captures in shared/fixtures/ipmi (captured by
this project on loopback). Redfish seeds are the payload shapes of the unit tests and the
simulator's built-in tree, written here, so no third-party text is copied; run-all.sh adds
the recorded vendor trees at run time.

    python3 fuzz/make-seeds.py
"""
import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures", "ipmi")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def ipmi():
    seen = set()
    answers = set()
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "*.txt"))):
        run = os.path.basename(os.path.dirname(path))
        for line in open(path):
            if line.startswith(("request: ", "response: ")):
                data = bytes.fromhex(line.split(": ", 1)[1].strip())
                h = hashlib.md5(data).hexdigest()[:12]
                if h in seen or len(seen) >= 48:
                    continue
                seen.add(h)
                write("ipmi_packets", f"{run}-{h}", data)
                write("ipmi_inbound", f"{run}-{h}", data)
    # Chassis and application answers (data after the completion code), as the
    # simulators send them.
    for name, data in {
        "chassis-status-on": bytes([0x01, 0x00, 0x00, 0x00]),
        "chassis-status-fault": bytes([0x19, 0x00, 0x40]),
        "boot-flags-pxe-once-efi": bytes([0x01, 0x05, 0xa0, 0x04, 0x00, 0x00, 0x00]),
        "boot-flags-cd-persistent": bytes([0x01, 0x05, 0xc0, 0x14, 0x00, 0x00, 0x00]),
        "boot-flags-not-valid": bytes([0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00]),
        "device-id": bytes([0x20, 0x81, 0x02, 0x05, 0x02, 0xbf, 0x57, 0x01, 0x00, 0x34, 0x12, 0, 0, 0, 0]),
        "guid": bytes(range(16)),
    }.items():
        if name not in answers:
            answers.add(name)
            write("ipmi_chassis", name, data)


def redfish():
    s = "/redfish/v1/Systems/1"
    vm = f"{s}/VirtualMedia"
    docs = {
        "root": {"@odata.id": "/redfish/v1", "RedfishVersion": "1.15.0", "Vendor": "Contoso",
                 "Systems": {"@odata.id": "/redfish/v1/Systems"},
                 "Managers": {"@odata.id": "/redfish/v1/Managers"},
                 "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
                 "Oem": {"Contoso": {}}},
        "collection": {"@odata.id": "/redfish/v1/Systems", "Members": [{"@odata.id": s}],
                       "Members@odata.count": 2},
        "collection-null": {"Members": None, "Members@odata.count": 3},
        "system": {"@odata.id": s + "/", "Id": "1", "Manufacturer": "Contoso", "PowerState": "On",
                   "Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Disabled",
                            "BootSourceOverrideMode": "UEFI",
                            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Cd", "Hdd"]},
                   "Actions": {"#ComputerSystem.Reset": {"target": s + "/Actions/ComputerSystem.Reset",
                               "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "PushPowerButton"]},
                               "Oem": {"#Contoso.Reset": {"target": s + "/Actions/Oem/Contoso.Reset"}}},
                   "Oem": {"Hpe": {"Actions": {"#HpeComputerSystemExt.PowerButton": {
                       "target": s + "/Actions/Oem/Hpe/HpeComputerSystemExt.PowerButton"}}}},
                   "VirtualMedia": {"@odata.id": vm},
                   "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1"}]},
                   "MemorySummary": {"TotalSystemMemoryGiB": 512}},
        "manager": {"@odata.id": "/redfish/v1/Managers/1", "Id": "1", "Model": "iLO 5",
                    "FirmwareVersion": "iLO 5 v2.72", "VirtualMedia": {"@odata.id": "/redfish/v1/Managers/1/VirtualMedia"},
                    "Actions": {"Oem": {"#OemManager.v1_4_0.OemManager#OemManager.ImportSystemConfiguration": {
                        "target": "/redfish/v1/Managers/1/Actions/Oem/EID_674_Manager.ImportSystemConfiguration"}}}},
        "slot-hpe": {"@odata.id": vm + "/2/", "Id": "2", "MediaTypes": ["CD", "DVD"], "Image": "",
                     "Inserted": None, "Oem": {"Hpe": {"BootOnNextServerReset": False, "Actions": {
                         "#HpeiLOVirtualMedia.InsertVirtualMedia": {"target": vm + "/2/Actions/Oem/Hpe/HpeiLOVirtualMedia.InsertVirtualMedia"}}}},
                     "Actions": {"#VirtualMedia.InsertMedia": {"target": vm + "/2/Actions/VirtualMedia.InsertMedia",
                                 "TransferProtocolType@Redfish.AllowableValues": ["HTTP", "HTTPS"]}}},
        "slot-none-image": {"Id": "Cd", "MediaTypes": ["DVD"], "Image": "None", "ConnectedVia": "NotConnected"},
        "task": {"TaskState": "Exception", "TaskStatus": "Critical",
                 "Messages": [{"MessageId": "Base.1.8.GeneralError", "Message": "failed"}]},
        "dell-job": {"Id": "JID_1", "JobState": "Failed", "MessageId": "SYS051", "Message": "bad", "PercentComplete": 100},
        "error-idrac": {"error": {"code": "Base.1.8.GeneralError", "message": "See ExtendedInfo",
                        "@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.7.LIC501", "Message": "licence"}]}},
        "error-ilo": {"error": {"code": "iLO.0.10.ExtendedInfo", "message": "See @Message.ExtendedInfo",
                      "@Message.ExtendedInfo": [{"MessageId": "Base.1.4.ResourceMissingAtURI",
                                                  "MessageArgs": ["Invalid URI"]}]}},
        "action-info": {"Parameters": [{"Name": "ResetType", "AllowableValues": ["On", "ForceOff"]}]},
    }
    for name, doc in docs.items():
        write("redfish_models", name, json.dumps(doc).encode())


ipmi()
redfish()
