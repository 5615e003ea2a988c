"""The demo composition, above every app: the demo plant's seed and its bootstrap champion, the SKAB demo,
the process supervisor and the `demo` / `seed_demo` commands. It may import plant, models_registry and
alerts; nothing in them imports it."""
