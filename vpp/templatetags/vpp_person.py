"""{{ event|event_person }}: the device user id an audit event is about (vpp.person.audit_event_person)."""

from django import template

from vpp.person import audit_event_person

register = template.Library()
register.filter("event_person", audit_event_person)
