"""Drive docker-registry-util 1.0.3 (the seed) for bench/bench.py. Runs under the seed's own venv
(.bench/seed-venv/bin/python), never regdb's, and prints its figures as one JSON line at the end of stdout.

    seed_refresh.py refresh URL CACHE                     full refresh through the seed's own CLI (dregutil
                                                           -reg URL -c CACHE --refresh list-repo-names)
    seed_refresh.py query-tags CACHE --repos R... --tags T... [--exclude X...]
    seed_refresh.py list-tag-names CACHE REPO

The query modes call the seed's own query code (DockerRegistryQuery.load + select_tags / get_tag_names, the
calls its CLI makes) on a cache file in its JSON layout, and print results the way its CLI does. They skip
one thing the seed's CLI does after every command, rewriting the whole cache file, so the seed's figure
here is, if anything, better than what its users saw.
"""

import argparse
import contextlib
import io
import json
import resource
import sys
import time


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def refresh(url, cache):
    # The seed's CLI parses sys.argv when its module is imported, so argv is set first.
    sys.argv = ["dregutil", "-reg", url, "-c", cache, "--refresh", "list-repo-names"]
    from docker_registry_util import cli

    started, cpu = time.perf_counter(), _cpu()
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main()
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    with open(cache) as f:
        data = json.load(f)
    digests = {d for tags in data.values() for d in tags.values()}
    return dict(seconds=seconds, cpu_seconds=cpu, repos=len(data), tags=sum(len(t) for t in data.values()),
                digests=len(digests))


def _query(cache):
    from docker_registry_util.client import DockerRegistryClient
    from docker_registry_util.query import DockerRegistryQuery

    # No request is made: load() marks the cache initialized, as the CLI does when a cache file exists.
    query = DockerRegistryQuery(DockerRegistryClient("http://127.0.0.1:1"))
    started = time.perf_counter()
    with open(cache) as f:
        query.load(f)
    return query, time.perf_counter() - started


def query_tags(cache, repos, tags, exclude):
    query, load_seconds = _query(cache)
    started = time.perf_counter()
    # The seed CLI's defaults: match_all_tags, raise_intersecting_repo, no raise_intersecting_tag.
    result = query.select_tags(repos, tags, exclude_tags=exclude or [])
    repo_len = max(map(len, repos))
    for repo, digest in result:
        print("{0:{1}}  {2}".format(repo, repo_len, digest))
    return dict(load_seconds=load_seconds, query_seconds=time.perf_counter() - started, rows=len(result),
                digests=sorted({str(digest) for _, digest in result}))


def list_tag_names(cache, repo):
    query, load_seconds = _query(cache)
    started = time.perf_counter()
    result = query.get_tag_names([repo])
    repo_len = max(len(r[0]) for r in result)
    for name, tag in result:
        print("{0:{1}}  {2}".format(name, repo_len, tag))
    return dict(load_seconds=load_seconds, query_seconds=time.perf_counter() - started, rows=len(result),
                tags=[tag for _, tag in result])


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("refresh")
    p.add_argument("url")
    p.add_argument("cache")
    p = sub.add_parser("query-tags")
    p.add_argument("cache")
    p.add_argument("--repos", nargs="+", required=True)
    p.add_argument("--tags", nargs="+", required=True)
    p.add_argument("--exclude", nargs="*")
    p = sub.add_parser("list-tag-names")
    p.add_argument("cache")
    p.add_argument("repo")
    args = parser.parse_args()
    try:
        if args.mode == "refresh":
            answer = refresh(args.url, args.cache)
        elif args.mode == "query-tags":
            answer = query_tags(args.cache, args.repos, args.tags, args.exclude)
        else:
            answer = list_tag_names(args.cache, args.repo)
    except BaseException as error:  # report the seed's crash as data: the bench prints why, not a figure
        answer = dict(error=f"{type(error).__name__}: {error}".splitlines()[0])
    sys.stdout.flush()
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
