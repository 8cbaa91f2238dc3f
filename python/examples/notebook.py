"""In a notebook: a progress bar (tqdm, when installed), then the manifest
as a DataFrame to look into what failed."""

import haul

result = haul.download("urls.txt", "downloads", jobs=64, progress=True)
frame = result.to_pandas()
print(frame[frame["status"] == "failed"][["url", "reason"]])
