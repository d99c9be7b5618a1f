from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def server_setting(request):
    return render(request, "vpp/server_setting.html", {})
