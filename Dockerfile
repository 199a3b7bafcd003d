# The bot as a container: `docker compose up` (see docker-compose.yml), or
#   docker build -t discord-openai-bot . && docker run --env-file .env -v bot-data:/app/data discord-openai-bot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned runtime first, so a code change does not reinstall it. Every dependency ships
# manylinux wheels (PyAV's bundle FFmpeg), so the image needs no compiler and no system package.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY bot ./bot
COPY cogs ./cogs

# A user without a login or root rights runs the bot; it owns only the data folder.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app bot \
    && mkdir -p /app/data \
    && chown bot /app/data
USER bot

# The default DATABASE_URL, sqlite:///data/bot.db, is /app/data/bot.db: keep it on a volume.
VOLUME ["/app/data"]

# The doctor runs in the same image: docker compose run --rm bot python -m bot doctor
CMD ["python", "-m", "bot"]
