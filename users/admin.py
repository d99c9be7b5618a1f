"""Django admin for device users and devices (also the yardstick in bench/users_page.py)."""

from __future__ import annotations

from django.contrib import admin

from users.models import Device, User


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = ("platform", "activation_state", "model", "os_version", "serial_number", "enrolled_at", "last_seen_at")
    readonly_fields = ("enrolled_at", "last_seen_at")
    show_change_link = True


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = (
        "display_name",
        "login_id",
        "email",
        "managed_apple_account",
        "department",
        "is_active",
        "last_seen_at",
    )
    # The summary columns filter without a join over devices (users.services).
    list_filter = ("is_active", "has_activated_apple_device", "has_ios", "has_ipados", "has_macos", "department")
    search_fields = ("display_name", "login_id", "email", "managed_apple_account")
    ordering = ("display_name", "id")
    list_per_page = 50
    readonly_fields = (
        "created_at",
        "updated_at",
        "last_seen_at",
        "has_activated_apple_device",
        "has_ios",
        "has_ipados",
        "has_macos",
        "has_android",
        "has_windows",
    )
    inlines = [DeviceInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "platform", "activation_state", "os_version", "last_seen_at")
    list_filter = ("platform", "activation_state")
    search_fields = ("serial_number", "model", "user__display_name", "user__login_id", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    ordering = ("-id",)
    list_per_page = 50
    readonly_fields = ("created_at", "updated_at")
