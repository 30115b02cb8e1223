"""Reader for the console output of a training script (``python train.py > train.log 2>&1``).

What such a file holds: transformers' ``ProgressCallback`` prints every ``logs`` dict with
``tqdm.write(str(logs))``, so the metrics are Python dict reprs (``{'loss': 0.69, ...}``; transformers 5.x quotes
every value: ``{'loss': '0.6969'}``) buried in tqdm output: ``\\r`` redraws, ANSI cursor moves, dataset bars,
warnings, and sometimes the dict glued to the end of a bar on the same physical line. The dicts carry no step, so
the step is derived (see :mod:`.steps`). A second, rarer shape is the text step table of the seed chapter
and of transformers' notebook callback (``Step Training Loss Rewards/Margins ...`` then one row per step), which
does carry steps. A third is the ``name: value`` line of custom loops (MiniMind's
``Epoch:[1/1](20/4292), loss: 0.6605, ...``, torchtune's ``Step 1 | loss:0.69 ...``, verl's ``step:1 - ...``), read
only when the file has neither dicts nor a table, because such pairs also appear in ordinary log chatter.

One file can hold several runs (``python train.py >> train.log`` twice). A new run starts where a train dict follows
the end-of-training summary, where the epoch goes back, or where the step of ``name: value`` lines goes back;
:meth:`StdoutReader.read_runs` returns each run (labelled ``run1``, ``run2``, ...).

Why a hand-written scanner instead of ``ast.literal_eval`` per line: lines can be megabytes long (tqdm redraws
joined by ``\\r``) or hold deeply nested structures printed by user code, and a log is untrusted input. Every
regex here is bounded and has no nested quantifiers, so scanning is linear in the file size, and no text is ever
evaluated. The file is streamed in chunks of a few MB (the unfinished last line is carried over), so a multi-GB
log never sits in memory as one string.

Why bytes, not decoded text: every delimiter searched for is ASCII, and UTF-8 never uses ASCII bytes inside a
multi-byte character, so matching on the raw bytes finds exactly what matching on the decoded text would, while
skipping a decode of the whole file (tqdm's block characters make that slow). What is kept (keys, table lines) is
decoded as UTF-8 with ``errors="replace"``; ``\\r`` counts as a line break everywhere.

The package, one job per module: :mod:`.grammar` (the three shapes, bounded regexes), :mod:`.scan` (the one chunk
loop and what it keeps), :mod:`.steps` (step derivation), :mod:`.runs` (run splitting and the frames) and
:mod:`.reader` (the registered reader and its live follower).
"""

from dpodoctor.readers.stdout.grammar import parse_metric_dict
from dpodoctor.readers.stdout.reader import StdoutFollower, StdoutReader, StdoutTail

__all__ = ["StdoutFollower", "StdoutReader", "StdoutTail", "parse_metric_dict"]
