"""Training recipes. Every module here is imported by ``embforge.config.load_recipes``
and registers ``run(cfg)`` with ``@register_recipe(name, Schema)``; keep torch imports
inside ``run`` so that validating a config stays fast."""
