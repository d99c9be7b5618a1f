from django.urls import path

from users import views

app_name = "users"
urlpatterns = [
    path("", views.user_list, name="list"),
    path("<int:pk>/", views.user_detail, name="detail"),
]
