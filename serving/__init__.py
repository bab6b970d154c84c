"""A local tagging service over `xlmr.tagger`: an ASGI app (run by uvicorn) with a JSON API and a
page that highlights entities, the chapter's Hub widget run locally.

    batcher.py   requests that arrive together are tagged together (bounded wait and batch size)
    api.py       the routes, input checks and limits, pipeline-shaped JSON
    page.html    the page at /: one static file, no CDN, no build step

Layering: uses `xlmr` only; `eval.py serve` starts it.
"""
