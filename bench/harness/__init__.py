"""One harness for every benchmark of the lab (issue 17): each benchmark measures, writes its
raw results as JSON under `docs/`, and renders its pages from that JSON; the mechanisms they
share (builds, servers, pinned wrk runs, /proc sampling, statistics) live once, here."""
