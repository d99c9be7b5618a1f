"""/api/v1/: django-ninja endpoints, thin over the services and selectors the console's views use.

Every error is JSON (``schemas.ErrorOut``: ``detail``, field ``errors``); docs/api.md lists them.
"""

from __future__ import annotations

from axes.helpers import get_client_ip_address
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, QueryDict
from django.shortcuts import get_object_or_404
from ninja import Header, NinjaAPI, Path, Query, Router, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import APIKeyHeader, HttpBearer

from kmconsole.api import services
from kmconsole.api.models import ApiToken, EnrolmentSecret
from kmconsole.api.schemas import (
    MAX_ID,
    DeviceCreateIn,
    DeviceOut,
    DeviceUpdateIn,
    ErrorOut,
    HealthOut,
    JobItemOut,
    JobItemPageOut,
    JobOut,
    JobStartIn,
    JobStartOut,
    PlanOut,
    PushTokenIn,
    PushTokenOut,
    UserCreateIn,
    UserFilterIn,
    UserOut,
    UserPageOut,
    UserRowOut,
    UserUpdateIn,
    VppHistoryOut,
    VppUserOut,
)
from users.forms import UserFilterForm, UserSelectionForm
from users.models import ActivationState, Device, User
from users.selectors import PAGE_SIZES, SORTS, user_page
from users.services import user_device_summary_refresh
from vpp import selectors
from vpp.audit import audit_record
from vpp.bulk_views import MAX_TICKED_IDS, PERMISSIONS, action_blocker
from vpp.jobs.engine import JobConflict, job_create, job_retry_failed
from vpp.jobs.plan import Plan, vpp_plan_build
from vpp.models import FINISHED_JOB_STATUSES, ItemStatus, Job, JobAction, JobItem, TokenHealth, VppServerSetting

ERRORS = dict.fromkeys((400, 401, 403, 404, 409, 422, 429), ErrorOut)


def _responses(ok: dict) -> dict:
    return {**ok, **ERRORS}


class ApiProblem(Exception):
    """An error answer: ``status`` and ``detail`` (and optional field ``errors``, ``plan``, headers)."""

    def __init__(self, status: int, detail: str, *, errors=None, plan=None, headers=None):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.errors, self.plan, self.headers = errors or [], plan, headers or {}


def _ip(request: HttpRequest) -> str | None:
    """The client's address as the login throttle and the bulk views see it (docs/roles.md)."""
    return get_client_ip_address(request) or None


# --------------------------------------------------------------------------- authentication


class TokenAuth(HttpBearer):
    """``Authorization: Bearer kmc_…``: a usable API token; rate limited per token; every call audited."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = services.token_find(token)
        if found is None:
            return None
        verdict = services.rate_check(f"token:{found.pk}")
        if not verdict.allowed:
            raise ApiProblem(
                429,
                f"Rate limit exceeded for this token; retry in {verdict.retry_after} s.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        services.token_touch(found, _ip(request))
        audit_record(
            actor=found.created_by,
            action="api.call",
            details={"token": found.name, "call": f"{request.method} {request.path}"},
            ip=_ip(request),
        )
        request.api_token = found
        return found


class EnrolmentAuth(APIKeyHeader):
    """``X-Enrolment-Secret: kme_…``: a device's unrevoked enrolment secret; rate limited per secret."""

    param_name = "X-Enrolment-Secret"

    def authenticate(self, request: HttpRequest, key: str | None) -> EnrolmentSecret | None:
        found = services.enrolment_find(key or "")
        if found is None:
            return None
        verdict = services.rate_check(f"enrolment:{found.pk}", limit=services.ENROLMENT_RATE_LIMIT)
        if not verdict.allowed:
            raise ApiProblem(
                429,
                f"Too many registrations; retry in {verdict.retry_after} s.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        return found


def _need(request: HttpRequest, scope: str) -> ApiToken:
    token = request.auth
    if not services.token_allows(token, scope):
        raise ApiProblem(403, f"This token may not do that (needs the scope {scope}).")
    return token


api = NinjaAPI(
    title="kmconsole API",
    version="1",
    description="Automation for device users and Apple VPP. See docs/api.md.",
    urls_namespace="api-v1",
    auth=TokenAuth(),
)


def _error(request, status: int, detail: str, *, errors=None, plan=None, headers=None):
    body = {"detail": detail, "errors": errors or [], "plan": plan}
    response = api.create_response(request, body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@api.exception_handler(ApiProblem)
def _problem(request, exc: ApiProblem):
    return _error(request, exc.status, exc.detail, errors=exc.errors, plan=exc.plan, headers=exc.headers)


@api.exception_handler(NinjaValidationError)
def _invalid(request, exc: NinjaValidationError):
    errors = []
    for err in exc.errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path", "header", "payload")]
        errors.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    return _error(request, 422, "The request was not understood.", errors=errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    if request.path.startswith("/api/v1/agent/"):
        return _error(request, 401, "A valid, unrevoked enrolment secret is required (X-Enrolment-Secret).")
    return _error(request, 401, "A valid, unrevoked and unexpired API token is required (Authorization: Bearer …).")


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "Not found.")


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return _error(request, exc.status_code, str(exc))


# --------------------------------------------------------------------------- users and devices

users_router = Router(tags=["device users"])


def _filter_form(filters: UserFilterIn, extra: dict | None = None, form_class=UserFilterForm):
    data = QueryDict(mutable=True)
    for key, value in {**filters.dict(), **(extra or {})}.items():
        if isinstance(value, list):
            data.setlist(key, [str(v) for v in value])
        elif value not in ("", None):
            data[key] = str(value)
    return form_class(data)


@users_router.get("/users", response=_responses({200: UserPageOut}))
def users_list(
    request,
    filters: Query[UserFilterIn],
    sort: str = Query("name", description=f"One of {', '.join(SORTS)}"),
    page: int = Query(1, ge=1, le=10**9),
    size: int = Query(50, description=f"One of {', '.join(map(str, PAGE_SIZES))}"),
):
    """One page of device users, with the Users page's filters, sort and page sizes."""
    _need(request, "users.view_user")
    form = _filter_form(filters, {"sort": sort, "page": page, "size": size})
    if form.ignored():
        raise ApiProblem(
            422,
            "The request was not understood.",
            errors=[{"field": name, "message": "; ".join(form.errors[name])} for name in form.ignored()],
        )
    result = user_page(filters=form.filters(), sort=form.sort_key, page=form.page_number, size=form.page_size)
    rows = [
        UserRowOut(**{**row, "vpp_status": row.get("vpp_status"), "devices": row["device_badges"]})
        for row in result.rows
    ]
    return {
        "count": result.total,
        "page": result.number,
        "size": result.size,
        "pages": result.num_pages,
        "sort": result.sort,
        "results": rows,
    }


def _user(pk: int) -> User:
    return get_object_or_404(User, pk=pk)


@users_router.post("/users", response=_responses({201: UserOut}))
def users_create(request, payload: UserCreateIn):
    """Create a device user. 409 when the login ID is taken."""
    _need(request, "users.add_user")
    if User.objects.filter(login_id=payload.login_id).exists():
        raise ApiProblem(
            409, "A device user with this login ID exists.", errors=[{"field": "login_id", "message": "taken"}]
        )
    user = User(**payload.dict())
    _full_clean(user)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise ApiProblem(409, "A device user with this login ID exists.") from None
    return Status(201, user)


def _full_clean(instance, exclude=()) -> None:
    from django.core.exceptions import ValidationError

    try:
        instance.full_clean(exclude=[*exclude, "search_text"], validate_unique=False)
    except ValidationError as exc:
        errors = [{"field": f, "message": " ".join(m)} for f, m in exc.message_dict.items()]
        raise ApiProblem(422, "The request was not understood.", errors=errors) from None


@users_router.get("/users/{user_id}", response=_responses({200: UserOut}))
def users_get(request, user_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "users.view_user")
    return _user(user_id)


@users_router.patch("/users/{user_id}", response=_responses({200: UserOut}))
def users_update(request, payload: UserUpdateIn, user_id: int = Path(..., ge=1, le=MAX_ID)):
    """Change a device user's name, email, department or active flag (only the fields given)."""
    _need(request, "users.change_user")
    user = _user(user_id)
    changes = payload.dict(exclude_unset=True, exclude_none=True)
    for name, value in changes.items():
        setattr(user, name, value)
    _full_clean(user)
    if changes:
        user.save(update_fields=[*changes, "updated_at"])
    return user


@users_router.post("/users/{user_id}/deactivate", response=_responses({200: UserOut}))
def users_deactivate(request, user_id: int = Path(..., ge=1, le=MAX_ID)):
    """Mark the device user inactive (kept, with its history; no longer eligible for invitations)."""
    _need(request, "users.change_user")
    user = _user(user_id)
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active", "updated_at"])
    return user


def _device_out(device: Device) -> dict:
    return {
        "id": device.pk,
        "user_id": device.user_id,
        "platform": device.platform,
        "activation_state": device.activation_state,
        "serial_number": device.serial_number,
        "model": device.model,
        "os_version": device.os_version,
        "has_push_token": bool(device.push_token),
        "last_seen_at": device.last_seen_at,
    }


@users_router.get("/users/{user_id}/devices", response=_responses({200: list[DeviceOut]}))
def devices_list(request, user_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "users.view_user")
    return [_device_out(d) for d in _user(user_id).devices.order_by("id")]


@users_router.post("/users/{user_id}/devices", response=_responses({201: DeviceOut}))
def devices_create(request, payload: DeviceCreateIn, user_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "users.add_user")
    device = Device.objects.create(user=_user(user_id), **payload.dict())
    return Status(201, _device_out(device))


@users_router.patch("/devices/{device_id}", response=_responses({200: DeviceOut}))
def devices_update(request, payload: DeviceUpdateIn, device_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "users.change_user")
    device = get_object_or_404(Device, pk=device_id)
    for name, value in payload.dict(exclude_unset=True, exclude_none=True).items():
        setattr(device, name, value)
    device.save()  # the Device signal refreshes the user's summary columns
    return _device_out(device)


@users_router.post("/devices/{device_id}/deactivate", response=_responses({200: DeviceOut}))
def devices_deactivate(request, device_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "users.change_user")
    device = get_object_or_404(Device, pk=device_id)
    device.activation_state = ActivationState.DEACTIVATED
    device.save()
    user_device_summary_refresh(user_ids=[device.user_id])
    return _device_out(device)


# --------------------------------------------------------------------------- VPP users

vpp_router = Router(tags=["VPP"])


@vpp_router.get("/users/{user_id}/vpp", response=_responses({200: VppUserOut}))
def vpp_user_get(request, user_id: int = Path(..., ge=1, le=MAX_ID)):
    """The device user's VPP status at Apple and what jobs did to it (newest first, at most 50)."""
    _need(request, "vpp.view_vppuser")
    user = _user(user_id)
    vpp_user = getattr(user, "vpp_user", None)
    items = JobItem.objects.filter(user=user).select_related("job").order_by("-id")[:50]
    history = [
        VppHistoryOut(
            job_id=item.job_id,
            action=item.job.action,
            status=item.status,
            reason=item.reason,
            error_number=item.error_number,
            at=item.updated_at,
        )
        for item in items
    ]
    return {
        "user_id": user.pk,
        "status": vpp_user.status if vpp_user else "none",
        "client_user_id": vpp_user.client_user_id if vpp_user else None,
        "apple_email": vpp_user.apple_email if vpp_user else "",
        "managed_apple_account": vpp_user.managed_apple_account if vpp_user else "",
        "invited_at": vpp_user.invited_at if vpp_user else None,
        "invitation_count": vpp_user.invitation_count if vpp_user else 0,
        "last_synced_at": vpp_user.last_synced_at if vpp_user else None,
        "last_error": vpp_user.last_error_message if vpp_user else "",
        "history": history,
    }


@vpp_router.get("/setting/health", response=_responses({200: HealthOut}))
def setting_health(request):
    """The content token's health and whether VPP user actions can run (read-only)."""
    _need(request, "vpp.view_vppserversetting")
    setting = VppServerSetting.load()
    return {
        "token_health": setting.token_health,
        "token_health_label": TokenHealth(setting.token_health).label,
        "detail": setting.token_health_detail,
        "checked_at": setting.token_health_checked_at,
        "expires_at": setting.token_expires_at,
        "organization": setting.token_org_name,
        "organizational_unit": setting.location_name,
        "assignment_method": setting.assignment_method,
        "invitation_channel": setting.invitation_channel,
        "actions_disabled_reason": selectors.vpp_actions_disabled_reason(setting),
    }


# --------------------------------------------------------------------------- jobs

jobs_router = Router(tags=["jobs"])


def _plan_out(plan: Plan, *, unknown_ids: int = 0) -> dict:
    return PlanOut(
        action=plan.action,
        channel=plan.channel,
        selected=len(plan.rows),
        eligible=len(plan.eligible),
        steps=plan.step_counts(),
        skipped=[
            {"code": code, "reason": reason, "count": n, "examples": examples}
            for code, reason, n, examples in plan.skip_rows()
        ],
        unknown_ids=unknown_ids,
        digest=plan.digest(),
    ).dict()


def _job_out(job: Job) -> dict:
    counts = selectors.job_item_counts(job)
    return JobOut(
        id=job.pk,
        action=job.action,
        status=job.status,
        phase=job.phase,
        total=job.total,
        succeeded=counts[ItemStatus.SUCCEEDED],
        failed=counts[ItemStatus.FAILED],
        skipped=counts[ItemStatus.SKIPPED],
        pending=counts[ItemStatus.PENDING] + counts[ItemStatus.IN_FLIGHT],
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        retry_of=job.retry_of_id,
        retry_after_until=job.retry_after_until,
    ).model_dump(mode="json")


IdempotencyKeyHeader = Header(
    ...,
    alias="Idempotency-Key",
    min_length=1,
    max_length=200,
    pattern=r"^[\x21-\x7e]+$",
    description="Any unique string (a UUID): a retry with the same key returns the first answer.",
)


def _start(request, payload: JobStartIn) -> tuple[int, dict]:
    """The bulk confirm + apply in one call: the plan, then the job when anyone is eligible."""
    action = JobAction(payload.action)
    if (payload.user_ids is None) == (payload.filter is None):
        raise ApiProblem(
            422,
            "Give either user_ids or filter.",
            errors=[{"field": "user_ids", "message": "exactly one of user_ids, filter"}],
        )
    if payload.user_ids is not None:
        form = _filter_form(UserFilterIn(), {"pk": payload.user_ids}, form_class=UserSelectionForm)
    else:
        form = _filter_form(payload.filter, {"select_all": "1"}, form_class=UserSelectionForm)
    problem = form.problem()
    if problem or len(payload.user_ids or []) > MAX_TICKED_IDS:
        raise ApiProblem(422, problem or f"At most {MAX_TICKED_IDS} user_ids.")
    setting = VppServerSetting.load()
    blocker = action_blocker(setting)
    if blocker:
        raise ApiProblem(409, blocker)
    selection = form.selection()
    channel = setting.invitation_channel if action == JobAction.INVITE else ""
    plan = vpp_plan_build(action=action, users=selection.users(), channel=channel)
    unknown = 0 if selection.all_matching else max(0, len(selection.ids) - len(plan.rows))
    plan_out = _plan_out(plan, unknown_ids=unknown)
    if not plan.rows:
        raise ApiProblem(422, "No users are selected (unknown ids, or nobody matches the filter).", plan=plan_out)
    if payload.dry_run:
        return 200, {"job": None, "plan": plan_out}
    if not plan.eligible:
        raise ApiProblem(409, "None of the selected users can be acted on. Nothing was started.", plan=plan_out)
    try:
        job = job_create(plan=plan, actor=request.auth.created_by, selection=selection, ip=_ip(request))
    except JobConflict as conflict:  # another request started a job for some of these users at the same moment
        raise ApiProblem(409, conflict.reason) from None
    return 201, {"job": _job_out(job), "plan": plan_out}


def _idempotent(request, key: str, body: dict, work):
    try:
        status, data, replayed = services.idempotent(
            token=request.auth,
            key=key,
            fingerprint=services.request_fingerprint(request.method, request.path, body),
            work=work,
        )
    except services.IdempotencyMismatch:
        raise ApiProblem(
            422,
            "This Idempotency-Key was used for a different request.",
            errors=[{"field": "Idempotency-Key", "message": "reused with another body"}],
        ) from None
    if status >= 400:
        return _error(request, status, data["detail"], errors=data.get("errors"), plan=data.get("plan"))
    return Status(status, {**data, "replayed": replayed})


def _work(func):
    """``func``'s (status, body), or an ApiProblem's as (status, error body): both are stored for replays."""

    def run():
        try:
            return func()
        except ApiProblem as exc:
            if exc.status == 429:
                raise
            return exc.status, {"detail": exc.detail, "errors": exc.errors, "plan": exc.plan}

    return run


@jobs_router.post("/jobs", response=_responses({200: JobStartOut, 201: JobStartOut}))
def jobs_start(request, payload: JobStartIn, idempotency_key: str = IdempotencyKeyHeader):
    """Start an invite, delete or sync job for ``user_ids`` or a ``filter``; the response carries the
    same plan (eligible users, skip reasons) as the console's confirmation. ``dry_run`` only plans."""
    _need(request, PERMISSIONS[JobAction(payload.action)])
    return _idempotent(
        request, idempotency_key, payload.model_dump(mode="json"), _work(lambda: _start(request, payload))
    )


@jobs_router.get("/jobs", response=_responses({200: list[JobOut]}))
def jobs_list(
    request,
    limit: int = Query(50, ge=1, le=200),
    action: str = Query("", description="A job kind (invite, delete, sync, convert, sync_all, …), or empty for all"),
    status: str = Query("", description="queued, running, done, failed, cancelled, with_failures, or empty for all"),
):
    """Jobs newest first, filtered as on the console's Jobs page (vpp.selectors.jobs_filtered)."""
    _need(request, "vpp.view_job")
    statuses = {value for value, _ in selectors.JOB_STATUS_FILTER_CHOICES}
    errors = []
    if action and action not in JobAction.values:
        errors.append({"field": "action", "message": f"one of {', '.join(JobAction.values)}"})
    if status and status not in statuses:
        errors.append({"field": "status", "message": f"one of {', '.join(sorted(statuses))}"})
    if errors:
        raise ApiProblem(422, "The request was not understood.", errors=errors)
    return [_job_out(job) for job in selectors.jobs_filtered(action=action, status=status)[:limit]]


@jobs_router.get("/jobs/{job_id}", response=_responses({200: JobOut}))
def jobs_get(request, job_id: int = Path(..., ge=1, le=MAX_ID)):
    _need(request, "vpp.view_job")
    return _job_out(get_object_or_404(Job, pk=job_id))


@jobs_router.get("/jobs/{job_id}/items", response=_responses({200: JobItemPageOut}))
def jobs_items(
    request,
    job_id: int = Path(..., ge=1, le=MAX_ID),
    status: str = Query("", description=f"One of {', '.join(ItemStatus.values)}, or empty for all"),
    page: int = Query(1, ge=1, le=10**9),
):
    """The job's per-user results, 200 a page."""
    _need(request, "vpp.view_job")
    job = get_object_or_404(Job, pk=job_id)
    if status and status not in ItemStatus.values:
        raise ApiProblem(422, "Unknown status.", errors=[{"field": "status", "message": f"one of {ItemStatus.values}"}])
    items = selectors.job_items(job, status=status or None)
    count = items.count()
    size = 200
    results = [
        JobItemOut(
            user_id=item.user_id,
            user=item.user_label,
            status=item.status,
            skip_reason=item.skip_reason,
            reason=item.reason,
            apple_error_number=item.error_number,
            client_user_id=item.vpp_user.client_user_id if item.vpp_user else None,
            attempts=item.attempts,
        )
        for item in items[(page - 1) * size : page * size]
    ]
    return {"count": count, "page": page, "pages": max(1, -(-count // size)), "results": results}


def _retry(request, job_id: int) -> tuple[int, dict]:
    job = get_object_or_404(Job, pk=job_id)
    if job.action not in PERMISSIONS:
        raise ApiProblem(409, "Only the bulk actions' jobs (invite, delete, sync, convert) can be retried.")
    _need(request, PERMISSIONS[job.action])
    if job.status not in FINISHED_JOB_STATUSES:
        raise ApiProblem(409, f"Job #{job.pk} is still running; retry it when it has finished.")
    blocker = action_blocker(VppServerSetting.load())
    if blocker:
        raise ApiProblem(409, blocker)
    try:
        retry = job_retry_failed(job=job, actor=request.auth.created_by, ip=_ip(request))
    except JobConflict as conflict:
        raise ApiProblem(409, conflict.reason) from None
    if retry is None:
        raise ApiProblem(409, f"Nothing to retry: job #{job.pk} has no failed users that still exist.")
    return 201, {"job": _job_out(retry), "plan": None}


class RetryOut(JobStartOut):
    plan: PlanOut | None = None


@jobs_router.post("/jobs/{job_id}/retry", response=_responses({201: RetryOut}))
def jobs_retry(request, job_id: int = Path(..., ge=1, le=MAX_ID), idempotency_key: str = IdempotencyKeyHeader):
    """A new job over the failed users of ``job_id`` (eligibility checked again)."""
    return _idempotent(request, idempotency_key, {"job_id": job_id}, _work(lambda: _retry(request, job_id)))


# --------------------------------------------------------------------------- the agent app

agent_router = Router(tags=["agent app"], auth=EnrolmentAuth())


@agent_router.post("/agent/push-token", response=_responses({200: PushTokenOut}))
def agent_push_token(request, payload: PushTokenIn):
    """The agent app registers or refreshes its APNs device token (X-Enrolment-Secret header)."""
    device = services.push_token_register(
        enrolment=request.auth, push_token=payload.push_token.lower(), ip=_ip(request)
    )
    return {"device_id": device.pk, "registered": True}


api.add_router("", users_router)
api.add_router("", vpp_router)
api.add_router("", jobs_router)
api.add_router("", agent_router)
