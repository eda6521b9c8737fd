"""`codesearch org index | status`, and asking an organisation's index (`codesearch query --org`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence

import typer

from codesearch import settings
from codesearch.cli.terminal import stderr_console
from codesearch.errors import CodesearchError

org_app = typer.Typer(no_args_is_help=True, help="An organisation's repositories in one index, built on Ray.")


def query_organisation(org_dir: Path, request, repo_names: Sequence[str], ray_address: Optional[str]):
    """`query --org`: every shard (or those of --repo-name) searched, fused once; a query.api.Answer whose
    hits name their repositories."""
    from codesearch.org.search import OrganisationSearch

    if ray_address:
        from codesearch.org.ray_pipeline import require_ray, shard_retriever

        require_ray()
    search = OrganisationSearch(org_dir, repo_names)
    try:
        retrieve_all = shard_retriever(search, ray_address) if ray_address else None
        return search.query(request, retrieve_all)
    finally:
        search.close()


@org_app.command("index")
def org_index(
    org_dir: Path = typer.Argument(..., help="The organisation index's folder (created if missing)."),
    repos: List[Path] = typer.Argument(None, help="Git repositories to add or refresh (default: those already in it)."),
    repos_file: Optional[Path] = typer.Option(None, "--repos-file", help="One repository path per line."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset, hub id or model folder (default: the "
                                                                     "index's own, else $CODESEARCH_MODEL, else bge-code-v1)."),
    ray_address: Optional[str] = typer.Option(None, "--ray", help="Join the Ray cluster at ADDRESS (default: a local Ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Embedding actors (default: one per GPU, else half the CPUs)."),
    shard_files: Optional[int] = typer.Option(None, "--shard-files", help="Split a repository past this many files into shards by path prefix (default: as before, else 5000)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
):
    """Index many git repositories into one organisation index, on Ray."""
    from codesearch.org.ray_pipeline import index_organisation, require_ray

    require_ray()
    paths = list(repos or [])
    if repos_file is not None:
        try:
            lines = repos_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CodesearchError(f"cannot read repositories file {repos_file}: {error}") from None
        paths += [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    console = stderr_console()
    report = index_organisation(org_dir, paths, model=model or settings.default_model(), address=ray_address,
                                workers=workers, shard_files=shard_files,
                                notice=(lambda message: None) if as_json else
                                (lambda message: console.print(f"codesearch: {message}")))
    if as_json:
        print(json.dumps(report.as_json()))
    else:
        console.print(f"indexed {report.repositories} repositories in {report.shards} shards ({report.shards_updated} "
                      f"written; {report.chunks} chunks, {report.embedded} embedded, {report.reused} reused) with "
                      f"{report.model} on {report.workers} Ray workers in {report.seconds:.1f}s")


@org_app.command("status")
def org_status(
    org_dir: Path = typer.Argument(..., help="The organisation index's folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The repositories and shards of an organisation index, their commits and generations, and what is stale."""
    from codesearch.org.shards import organisation_status

    info = organisation_status(org_dir)
    if as_json:
        print(json.dumps(info))
        return
    print(f"organisation  {info['organisation']}\nmodel         {info['model']} ({info['dimension']} dims)\n"
          f"generation    {info['generation']}\nshards        {info['shards']} ({info['chunks']} chunks, "
          f"{info['stale_shards']} stale)")
    for repository in info["repositories"]:
        print(f"{repository['name']}  {repository['commit'][:12] or '(no commit)'}  {repository['root']}")
        for shard in repository["shards"]:
            where = ", ".join(prefix or "(all)" for prefix in shard["prefixes"][:3])
            more = f" +{len(shard['prefixes']) - 3}" if len(shard["prefixes"]) > 3 else ""
            print(f"  {shard['key']}  generation {shard['generation']}  {shard['files']} files  {shard['chunks']} "
                  f"chunks  {where}{more}  {('stale: ' + shard['stale']) if shard['stale'] else 'current'}")
