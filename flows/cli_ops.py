"""Operations commands: serve, backfill, history."""
