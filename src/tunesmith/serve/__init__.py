"""An OpenAI-compatible server for the models tunesmith tuned, and for fine-tuning jobs that train new ones.

    tunesmith serve --runs-dir runs/ [--host 127.0.0.1] [--port 8000] [--api-key-file keys.txt]

app.py builds the FastAPI app; routes_inference.py and routes_jobs.py hold the routes; store.py persists files, jobs
and events in SQLite inside the runs directory; worker.py runs jobs in their own process through `tunesmith train`;
catalog.py, engines.py, decode.py and batcher.py turn model ids into loaded models and answer requests in batches.
"""
