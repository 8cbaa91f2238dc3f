"""A dataset of posts whose `pics` column holds lists of image URLs: one
folder per post, only images, and the rows that failed written back as a
CSV to feed to the next run."""

from pathlib import Path

import haul


def fetch_posts(table: Path, out: Path) -> haul.Result:
    return haul.download(
        table,
        out,
        column="pics",
        name="{col.id}/{name}",
        accept="image/*",
        keep_columns=["id", "user"],
        failed=out.with_suffix(".failed.csv"),
        per_host=16,
        rate="host=img.example.org:20/s",
    )


if __name__ == "__main__":
    r = fetch_posts(Path("posts.csv"), Path("posts"))
    print(r, r.failures)
