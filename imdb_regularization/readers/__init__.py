"""Reading the raw IMDB sources: where they come from, how they are downloaded and checked, how they are parsed.

- `sources`: the official URL, checksum and file name of each source; the record `fetch` leaves.
- `download`: fetching a URL or local copy into the user's download cache, verified.
- `keras_npz`: Keras' `imdb.npz`, loaded without letting its pickles run code.
- `aclimdb` and `tar_stream`: the raw Stanford archive, streamed review by review, never extracted.
"""
