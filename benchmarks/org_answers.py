"""The query command for scoring the dev eval as one organisation index (issue 16's quality figure).

score.py asks each repository its own questions, with the repository as the working folder. This runs
them against the whole organisation instead (`codesearch query --org`), so every other repository's
functions compete, and hands score.py the answers with those from another repository made unmatchable
(their path is prefixed with their repository's name): a distractor from elsewhere is a miss, as it is
for a user.

    python ../shared/eval/score.py --corpus ../evalcorpus --split dev --no-clean \\
        --query-cmd "$PWD/.venv/bin/python $PWD/benchmarks/org_answers.py ORG_DIR {repo} {k} {queries_file}"
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    org_dir, repository, k, queries_file = sys.argv[1:5]
    name = Path(repository).name
    completed = subprocess.run([sys.executable, "-m", "codesearch", "query", "--org", org_dir, "--json", "-k", k,
                                "--queries-file", queries_file], capture_output=True, text=True)
    if completed.returncode:
        sys.stderr.write(completed.stderr)
        return completed.returncode
    for line in completed.stdout.splitlines():
        answer = json.loads(line)
        for result in answer["results"]:
            if result["repository"] != name:
                result["path"] = f"{result['repository']}::{result['path']}"
        print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
