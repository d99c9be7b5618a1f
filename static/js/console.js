// kmconsole console behaviour (no inline scripts: CSP)
