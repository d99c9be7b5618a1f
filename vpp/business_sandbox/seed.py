"""The demo organisation of the Apple Business sandbox: people with Managed Apple Accounts,
user groups (STANDARD and SMART), organizational units and devices. Deterministic: person ``n``
is the same in every run, so ``make run`` re-syncs to "unchanged"."""

from __future__ import annotations

from vpp.business_sandbox.service import Organisation

FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Grace", "Hugo", "Iris", "Jonas", "Kai", "Lena", "Mateo",
         "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Viktor", "Wen", "Yara", "Zoe"]  # fmt: skip
LAST = ["Adams", "Berg", "Costa", "Diaz", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
        "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Quint", "Rossi", "Schmidt", "Tanaka"]  # fmt: skip
DEPARTMENTS = ["Sales", "Engineering", "Support", "Finance", "Operations"]
FAMILIES = [
    ("iPhone", "iPhone 15", "iPhone15,4"),
    ("iPad", "iPad Air (M2)", "iPad14,8"),
    ("Mac", "MacBook Air (M3)", "Mac15,12"),
]
MAA_DOMAIN = "appleid.example.com"
EMAIL_DOMAIN = "example.com"
STAMP = "2026-04-30T22:05:14.192Z"


def person(n: int) -> tuple[str, dict]:
    """Person ``n`` (1-based): (id, attributes). Every 40th is DEACTIVATED, every 97th LOCKED."""
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST)) % len(LAST)]
    handle = f"{first}.{last}.{n}".lower()
    status = "DEACTIVATED" if n % 40 == 0 else "LOCKED" if n % 97 == 0 else "ACTIVE"
    return f"{1000000000 + n}", {
        "firstName": first,
        "lastName": last,
        "status": status,
        "managedAppleAccount": f"{handle}@{MAA_DOMAIN}",
        "isExternalUser": False,
        "email": f"{handle}@{EMAIL_DOMAIN}",
        "employeeNumber": f"E{n:06d}",
        "department": DEPARTMENTS[n % len(DEPARTMENTS)],
        "roleOuList": [{"roleName": "STAFF", "ouId": "OU000001"}],
        "createdDateTime": STAMP,
        "updatedDateTime": STAMP,
    }


def demo_organisation(people: int = 60, *, name: str = "Example Corp", devices: int | None = None) -> Organisation:
    """An organisation of ``people`` people, one device per person with a serial ``C0DEMO<n>``
    (``devices`` overrides the count), groups "Sales" (STANDARD: the Sales department),
    "Engineering" (STANDARD) and "Everyone active" (SMART), one organizational unit."""
    org = Organisation(name=name)
    sales, engineering, everyone = [], [], []
    for n in range(1, people + 1):
        pid, attrs = person(n)
        org.users[pid] = attrs
        if attrs["department"] == "Sales":
            sales.append(pid)
        elif attrs["department"] == "Engineering":
            engineering.append(pid)
        if attrs["status"] == "ACTIVE":
            everyone.append(pid)
    org.units["OU000001"] = {"name": name, "description": "The whole organisation", "createdDateTime": STAMP,
                             "updatedDateTime": STAMP, "members": list(org.users)}  # fmt: skip
    for gid, gname, gtype, members in (
        ("UG000001", "Sales", "STANDARD", sales),
        ("UG000002", "Engineering", "STANDARD", engineering),
        ("UG000003", "Everyone active", "SMART", everyone),
    ):
        org.groups[gid] = {"ouId": "OU000001", "name": gname, "type": gtype, "totalMemberCount": len(members),
                           "status": "ACTIVE", "createdDateTime": STAMP, "updatedDateTime": STAMP,
                           "members": members}  # fmt: skip
    for n in range(1, (people if devices is None else devices) + 1):
        family, model, product_type = FAMILIES[n % len(FAMILIES)]
        serial = f"C0DEMO{n:06d}"
        org.devices[serial] = {
            "serialNumber": serial, "deviceModel": model, "productFamily": family, "productType": product_type,
            "status": "ASSIGNED" if n % 5 else "UNASSIGNED", "addedToOrgDateTime": STAMP, "updatedDateTime": STAMP,
            "purchaseSourceType": "APPLE", "purchaseSourceId": "1234567",
        }  # fmt: skip
    return org
