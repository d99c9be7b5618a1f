def console(request):
    """Values every console page needs (navigation state)."""
    match = getattr(request, "resolver_match", None)
    return {"nav_section": match.namespace if match else ""}
