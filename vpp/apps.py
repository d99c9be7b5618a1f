from django.apps import AppConfig


class VppConfig(AppConfig):
    name = "vpp"
    verbose_name = "Apple VPP"

    def ready(self) -> None:
        from users.csv_import import register_import_runner
        from users.person import register_person_section
        from users.selectors import register_filter, register_row_annotation
        from users.table import register_cell
        from vpp import checks  # noqa: F401  (registers the system checks)
        from vpp.overview import VPP_STAGE_FILTER_CHOICES, users_filter_by_vpp_stage
        from vpp.person import person_section
        from vpp.selectors import (
            SHARED_ACCOUNT_FILTER_CHOICES,
            VPP_STATUS_FILTER_CHOICES,
            users_filter_by_shared_account,
            users_filter_by_vpp_status,
            users_vpp_row_annotation,
        )
        from vpp.services.user_import import user_import_job_start
        from vpp.users_table import vpp_status_cell

        # The Users page's CSV import is applied as a job on the one job engine.
        register_import_runner(user_import_job_start)

        # The VPP status column of the Users page: its row values, then its cell.
        register_row_annotation(users_vpp_row_annotation)
        register_cell("vpp_status", vpp_status_cell)
        # ... and its filter (?vpp_status=invited, or "none" for users never sent to Apple).
        register_filter(
            name="vpp_status",
            label="VPP status",
            any_label="Any VPP status",
            choices=VPP_STATUS_FILTER_CHOICES,
            apply=users_filter_by_vpp_status,
        )
        # ... and "one Apple Account, several VPP users" (?apple_account=shared).
        register_filter(
            name="apple_account",
            label="Apple Account",
            any_label="Any Apple Account",
            choices=SHARED_ACCOUNT_FILTER_CHOICES,
            apply=users_filter_by_shared_account,
        )
        # ... and the overview's funnel stages the status filter does not cover (?vpp_stage=invited_7d).
        register_filter(
            name="vpp_stage",
            label="VPP funnel stage",
            any_label="Any funnel stage",
            choices=VPP_STAGE_FILTER_CHOICES,
            apply=users_filter_by_vpp_stage,
        )
        # The VPP part of a person's page (/users/<id>/): users/person.py shows it, vpp fills it.
        register_person_section("vpp", person_section, order=100)
