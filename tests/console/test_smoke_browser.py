def test_sign_in_and_dashboard(demo, screen):
    s = screen()
    s.go("/")
    assert s.page.url.endswith("/console/login?next=/console/")
    s.check("login")
    s.sign_in("admin@demo.example.com")
    assert s.page.url.endswith("/console/")
    s.check("dashboard")
