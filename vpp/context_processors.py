"""The console-wide token banner: read from the stored health state (no Apple call per page)."""

from django.utils.functional import SimpleLazyObject


def token_banner(request):
    def banner():
        from vpp.models import VppServerSetting
        from vpp.selectors import token_banner as banner_for

        setting = VppServerSetting.objects.filter(pk=1).only("token_health", "token_health_detail",
                                                             "other_mdm_name").first()
        return banner_for(setting) if setting else None

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: pages that do not render the banner (fragments) pay nothing.
    return {"vpp_token_banner": SimpleLazyObject(banner)}
