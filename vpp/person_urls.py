from django.urls import path

from vpp import overview_views

app_name = "vpp_person"
urlpatterns = [
    path("<int:pk>/licences/", overview_views.person_licences, name="licences"),
    path("<int:pk>/invitation-link/", overview_views.invitation_link, name="invitation-link"),
]
