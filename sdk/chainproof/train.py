"""Train a scikit-learn model on a verified CSV table and write it, preprocessing included, with joblib.

Example:
    >>> import pathlib, random, tempfile
    >>> from chainproof.train import train_table
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = random.Random(0)
    >>> rows = ["id,plan,age,churned"] + [
    ...     f"{i},{p},{'' if i % 7 == 0 else rng.randint(18, 80)},{int(p == 'basic')}"
    ...     for i, p in ((i, rng.choice(['basic', 'pro', ''])) for i in range(200))]
    >>> _ = (d / "churn.csv").write_text("\\n".join(rows) + "\\n")
    >>> result = train_table(d / "churn.csv", target="churned", drop=["id"], model_dir=d / "model",
    ...                      estimator="decision_tree")
    >>> result.task, [(f["name"], f["type"]) for f in result.features]
    ('classification', [('plan', 'categorical'), ('age', 'numeric')])

The table is read with the stdlib :mod:`csv` module (no pandas at run time). Each
feature column's type is inferred (or declared with ``column_types``): a column is
**numeric** when every non-empty cell is a number Python's ``float`` reads, and
**categorical** otherwise; a cell that is empty or only whitespace is a missing
value. The model is ONE scikit-learn :class:`~sklearn.pipeline.Pipeline`: a
:class:`~sklearn.compose.ColumnTransformer` (numeric columns: median imputation,
plus standard scaling for linear models; categorical columns: most-frequent
imputation and a one-hot encoding that ignores unseen categories) in front of the
estimator, so the preprocessing learned in training is exactly the one applied at
serving (no train/serve skew). The pipeline takes a 2-D array whose columns are
the features in the recorded order (:attr:`TrainResult.features`): numbers for
numeric columns, strings for categorical ones, ``NaN`` for a missing value;
:func:`prepare_rows` builds it from raw rows with the same conversion training used.

Estimators come from fixed tables by name (:data:`CLASSIFIERS`, :data:`REGRESSORS`),
never imported by a string the caller controls; hyperparameters are a JSON object
validated by the estimator's own ``set_params``.

The task: ``classification``, ``regression``, or ``auto``. A numeric target with
**many distinct values** (more than 20 distinct values *and* more than 5% of the
rows, :func:`many_valued`) is refused as a classification target, naming the column
and the count: such a column is a quantity to predict (``task="regression"``), and a
classifier trained on it has about one example per class. Both conditions are needed:
20 classes in a large table, or 30 distinct values in 100 rows, are plausible labels.
``auto`` chooses regression for such a target and classification otherwise.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import operator
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chainproof.errors import ColumnError, InputError

__all__ = [
    "CLASSIFIERS",
    "ESTIMATORS",
    "MANY_VALUES_MIN_DISTINCT",
    "MANY_VALUES_MIN_FRACTION",
    "REGRESSORS",
    "TrainResult",
    "many_valued",
    "prepare_rows",
    "train_classifier",
    "train_table",
]

ColumnType = Literal["numeric", "categorical"]
Task = Literal["classification", "regression", "auto"]

#: A numeric target with more distinct values than this ...
MANY_VALUES_MIN_DISTINCT = 20
#: ... and more distinct values than this fraction of the rows is not a classification target.
MANY_VALUES_MIN_FRACTION = 0.05

_CHUNK_ROWS = 8192
_TYPES = ("numeric", "categorical")
_TASKS = ("classification", "regression", "auto")


def _random_forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=0)


def _logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000)


def _gradient_boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0)


def _decision_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=0)


def _random_forest_regressor() -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=100, random_state=0)


def _linear_regression() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def _ridge() -> Any:
    from sklearn.linear_model import Ridge

    return Ridge()


def _gradient_boosting_regressor() -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=0)


def _decision_tree_regressor() -> Any:
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(random_state=0)


#: Classifier name to a factory for its default configuration.
CLASSIFIERS: dict[str, Callable[[], Any]] = {
    "random_forest": _random_forest,
    "logistic_regression": _logistic_regression,
    "gradient_boosting": _gradient_boosting,
    "decision_tree": _decision_tree,
}

#: Regressor name to a factory for its default configuration.
REGRESSORS: dict[str, Callable[[], Any]] = {
    "random_forest": _random_forest_regressor,
    "linear_regression": _linear_regression,
    "ridge": _ridge,
    "gradient_boosting": _gradient_boosting_regressor,
    "decision_tree": _decision_tree_regressor,
}

#: The classifiers, under the name earlier releases used.
ESTIMATORS = CLASSIFIERS

# Linear models need their numeric inputs on one scale; trees do not.
_LINEAR = frozenset({"logistic_regression", "linear_regression", "ridge"})
# HistGradientBoosting accepts only dense input.
_DENSE = frozenset({"gradient_boosting"})


@dataclass(frozen=True)
class TrainResult:
    """What training produced.

    Attributes:
        model_path: the joblib file (the whole Pipeline: preprocessing and estimator).
        metrics: held-out metrics. Classification: ``accuracy``, ``f1`` (macro) and, for two
            classes, ``roc_auc``; regression: ``r2``, ``mae``, ``rmse``; both: ``rows``,
            ``train_rows``, ``test_rows``, ``estimator``, ``task``.
        features: the model's input columns in order, each ``{"name", "type"}`` plus
            ``"categories"`` (the categories learned, sorted) for a categorical column.
        task: ``classification`` or ``regression`` (what ``auto`` resolved to).
        target: the target column.
        classes: the class labels (classification), else empty.
        profile: the reference profile of the training data for drift monitoring
            (:func:`chainproof.drift.build_profile`: quantile bins, category frequencies, the
            held-out score distribution; no raw rows).
    """

    model_path: Path
    metrics: dict[str, Any]
    features: list[dict[str, Any]]
    task: str = "classification"
    target: str = ""
    classes: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """The feature column names, in the order the model takes them."""
        return [f["name"] for f in self.features]


def many_valued(distinct: int, rows: int) -> bool:
    """Return whether a numeric target with ``distinct`` values in ``rows`` rows is a quantity, not a label.

    Args:
        distinct: the number of distinct target values.
        rows: the number of rows.

    Returns:
        ``distinct > 20 and distinct > 0.05 * rows``.
    """
    return distinct > MANY_VALUES_MIN_DISTINCT and distinct > MANY_VALUES_MIN_FRACTION * rows


# --------------------------------------------------------------------------- reading


class _Column:
    """One column while reading: numbers in chunks while every cell parses, strings otherwise."""

    def __init__(self, name: str, index: int, declared: str | None) -> None:
        self.name, self.index, self.declared = name, index, declared
        self.text = declared == "categorical"
        self.chunks: list[Any] = []
        self.missing = 0
        self.first_missing: int | None = None
        self.first_nonfinite: tuple[int, str] | None = None
        self.distinct: dict[str, str] = {}
        self.reread = False

    def reset_as_text(self) -> None:
        self.text, self.chunks, self.missing, self.first_missing = True, [], 0, None
        self.first_nonfinite, self.distinct, self.reread = None, {}, False

    def add_numbers(self, values: Any, chunk: Sequence[Sequence[str]], lines: Sequence[int]) -> None:
        """Take a chunk this column parsed as numbers (every cell present); note the first non-finite one."""
        import numpy as np

        finite = np.isfinite(values)
        if self.first_nonfinite is None and not finite.all():
            i = int(np.argmin(finite))
            self.first_nonfinite = (lines[i], chunk[i][self.index])
        self.chunks.append(values)

    def add(self, cells: Sequence[str], lines: Sequence[int], *, artifact: str) -> None:
        import numpy as np

        if not self.text:
            try:
                values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
            except ValueError:
                values = self._parse_slowly(cells, lines, artifact=artifact)
            else:
                finite = np.isfinite(values)
                if not finite.all() and self.first_nonfinite is None:
                    i = int(np.argmin(finite))
                    self.first_nonfinite = (lines[i], cells[i])
            if values is not None:
                self.chunks.append(values)
                return
            # A cell that is not a number: the column is categorical. The chunks read as numbers
            # lost their text; the caller reads this column again from the file.
            self.reread = bool(self.chunks)
            self.text, self.chunks, self.first_nonfinite = True, [], None
        out: list[Any] = []
        distinct = self.distinct
        for i, cell in enumerate(cells):
            if not cell or cell.isspace():
                self._missing(lines[i])
                out.append(math.nan)
            else:
                out.append(distinct.setdefault(cell, cell))
        self.chunks.append(out)

    def _missing(self, line: int) -> None:
        self.missing += 1
        if self.first_missing is None:
            self.first_missing = line

    def _parse_slowly(self, cells: Sequence[str], lines: Sequence[int], *, artifact: str) -> Any:
        import numpy as np

        values = np.empty(len(cells), dtype=np.float64)
        missing: list[int] = []
        for i, cell in enumerate(cells):
            try:
                v = float(cell)
            except ValueError:
                if not cell or cell.isspace():
                    missing.append(i)
                    values[i] = math.nan
                    continue
                if self.declared == "numeric":
                    raise ColumnError(
                        artifact, self.name, f"declared numeric, but line {lines[i]} holds {_show(cell)}"
                    ) from None
                return None
            if not math.isfinite(v) and self.first_nonfinite is None:
                self.first_nonfinite = (lines[i], cell)
            values[i] = v
        for i in missing:
            self._missing(lines[i])
        return values


@dataclass(frozen=True)
class _Table:
    path: Path
    artifact: str
    header: list[str]
    rows: int
    columns: dict[str, _Column]


def _show(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:40] + "...")


def _records(path: Path) -> Iterable[tuple[int, list[str]]]:
    """Yield (line number, fields) for the header and every non-blank record."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row:
                yield reader.line_num, row


def _read_table(
    path: Path,
    *,
    keep: Callable[[list[str]], dict[str, str | None]],
    max_rows: int,
    chunk_rows: int = _CHUNK_ROWS,
) -> _Table:
    """Read the CSV column by column; ``keep(header)`` names the columns to keep and their declared types.

    Rows are read in chunks; a column stays a float array while every cell of it parses,
    so a numeric table never holds its cells as strings.
    """
    artifact = path.name
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next((row for row in reader if row), None)
            if header is None:
                raise InputError(f"{artifact}: empty CSV (no header)")
            _check_header(artifact, header)
            columns = {n: _Column(n, header.index(n), t) for n, t in keep(header).items()}
            count = _read_chunks(reader, list(columns.values()), artifact=artifact, width=len(header),
                                 max_rows=max_rows, chunk_rows=chunk_rows)
        again = [c for c in columns.values() if c.reread]
        if again:
            # Columns that turned out categorical after chunks of numbers: read their text again.
            for col in again:
                col.reset_as_text()
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                next((row for row in reader if row), None)
                if _read_chunks(reader, again, artifact=artifact, width=len(header),
                                max_rows=max_rows, chunk_rows=chunk_rows) != count:
                    raise InputError(f"{artifact}: changed while it was read")
    except UnicodeDecodeError as exc:
        raise InputError(f"{artifact}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{artifact}: not a readable CSV ({exc})") from exc
    return _Table(path=path, artifact=artifact, header=header, rows=count, columns=columns)


def _read_chunks(
    reader: Any,
    columns: list[_Column],
    *,
    artifact: str,
    width: int,
    max_rows: int,
    chunk_rows: int,
) -> int:
    count = 0
    chunk: list[list[str]] = []
    lines: list[int] = []
    append, line_of = chunk.append, lines.append
    for row in reader:
        if len(row) != width:
            if not row:
                continue
            raise InputError(f"{artifact}: line {reader.line_num} has {len(row)} fields, expected {width}")
        append(row)
        line_of(reader.line_num)
        if len(chunk) >= chunk_rows:
            count += len(chunk)
            if count > max_rows:
                raise InputError(f"{artifact}: more than {max_rows} rows (the limit)")
            _flush(chunk, lines, columns, artifact=artifact)
    count += len(chunk)
    if count > max_rows:
        raise InputError(f"{artifact}: more than {max_rows} rows (the limit)")
    _flush(chunk, lines, columns, artifact=artifact)
    return count


def _flush(chunk: list[list[str]], lines: list[int], columns: list[_Column], *, artifact: str) -> None:
    import numpy as np

    if not chunk:
        return
    numeric = [c for c in columns if not c.text]
    rest = [c for c in columns if c.text]
    if numeric:
        # Fast path: every numeric column of the chunk parsed in one pass (Python's float, in C).
        n, k = len(chunk), len(numeric)
        pick = operator.itemgetter(*(c.index for c in numeric))
        cells = map(pick, chunk) if k == 1 else itertools.chain.from_iterable(map(pick, chunk))
        try:
            block = np.fromiter(map(float, cells), dtype=np.float64, count=n * k).reshape(n, k)
        except ValueError:
            rest = columns
        else:
            for j, col in enumerate(numeric):
                col.add_numbers(block[:, j].copy(), chunk, lines)
    for col in rest:
        col.add([row[col.index] for row in chunk], lines, artifact=artifact)
    chunk.clear()
    lines.clear()


def _check_header(artifact: str, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise InputError(f"{artifact}: header field {i} is empty (every column needs a name)")
        if name in seen:
            raise ColumnError(artifact, name, f"appears twice in the header (fields {seen[name]} and {i})")
        seen[name] = i


# --------------------------------------------------------------------------- columns to arrays


def _numbers(table: _Table, col: _Column) -> Any:
    import numpy as np

    values = np.concatenate(col.chunks) if col.chunks else np.empty(0)
    if col.first_nonfinite is not None:
        line, cell = col.first_nonfinite
        raise ColumnError(table.artifact, col.name, f"line {line} holds {_show(cell)}, not a finite number")
    return values


def _feature_values(table: _Table, col: _Column, *, max_categories: int) -> tuple[str, Any]:
    import numpy as np

    if col.missing == table.rows:
        raise ColumnError(table.artifact, col.name, f"every cell is empty ({table.rows} rows); drop it")
    if not col.text:
        return "numeric", _numbers(table, col)
    if len(col.distinct) > max_categories:
        raise ColumnError(
            table.artifact, col.name,
            f"categorical with {len(col.distinct)} distinct values, more than the limit of {max_categories} "
            "(an identifier? drop it)",
        )
    values = np.empty(table.rows, dtype=object)
    start = 0
    for part in col.chunks:
        values[start:start + len(part)] = part
        start += len(part)
    return "categorical", values


def _target_values(table: _Table, col: _Column, *, task: str) -> tuple[str, Any]:
    """Return the task (classification or regression) and the target's values."""
    import numpy as np

    if col.missing:
        raise ColumnError(
            table.artifact, col.name,
            f"the target has {col.missing} missing values in {table.rows} rows (first on line {col.first_missing})",
        )
    labels = np.empty(table.rows, dtype=object)
    start = 0
    for part in col.chunks:
        labels[start:start + len(part)] = part
        start += len(part)
    numeric: dict[str, float] = {}
    bad: str | None = None
    for text in col.distinct:
        try:
            v = float(text)
        except ValueError:
            bad = text
            break
        if not math.isfinite(v):
            bad = text
            break
        numeric[text] = v
    distinct = len(col.distinct)
    quantity = bad is None and many_valued(distinct, table.rows)
    resolved = task if task != "auto" else ("regression" if quantity else "classification")
    if resolved == "regression":
        if bad is not None:
            line = _line_of(table, col, bad)
            raise ColumnError(
                table.artifact, col.name, f"a regression target must be numeric, but line {line} holds {_show(bad)}"
            )
        return "regression", np.fromiter((numeric[t] for t in labels), dtype=np.float64, count=table.rows)
    if quantity:
        raise ColumnError(
            table.artifact, col.name,
            f"numeric with {distinct} distinct values in {table.rows} rows: refused as a classification target "
            f"(more than {MANY_VALUES_MIN_DISTINCT} distinct values and more than "
            f"{MANY_VALUES_MIN_FRACTION:.0%} of the rows); to predict it as a number, use task='regression'",
        )
    if distinct < 2:
        raise ColumnError(table.artifact, col.name, f"the target has {distinct} class, at least two are needed")
    return "classification", labels.astype(str)


def _line_of(table: _Table, col: _Column, cell: str) -> int | str:
    # Only the error path needs a line number: find the cell in the file again.
    records = iter(_records(table.path))
    next(records, None)
    for line, row in records:
        if len(row) > col.index and row[col.index] == cell:
            return line
    return "?"


# --------------------------------------------------------------------------- training


def _parse_hyperparameters(hyperparameters: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(hyperparameters, str):
        try:
            params = json.loads(hyperparameters) if hyperparameters.strip() else {}
        except ValueError as exc:
            raise InputError(f"hyperparameters: not a JSON object ({exc})") from exc
    else:
        params = hyperparameters
    if not isinstance(params, Mapping):
        raise InputError(f"hyperparameters: expected a JSON object, got {type(params).__name__}")
    return dict(params)


def _estimator(name: str, task: str, params: dict[str, Any]) -> Any:
    table = CLASSIFIERS if task == "classification" else REGRESSORS
    if name not in table:
        raise InputError(f"estimator {name!r}: not a {task} estimator (choose from {', '.join(sorted(table))})")
    model = table[name]()
    # Earlier releases wrapped logistic_regression in a pipeline: accept its step prefix.
    prefix = f"{type(model).__name__.lower()}__"
    params = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in params.items()}
    try:
        model.set_params(**params)
    except (ValueError, TypeError) as exc:
        raise InputError(f"hyperparameters for {name}: {exc}") from exc
    return model


def _pipeline(estimator: str, model: Any, kinds: list[str]) -> Any:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [i for i, k in enumerate(kinds) if k == "numeric"]
    categorical = [i for i, k in enumerate(kinds) if k == "categorical"]
    dense = estimator in _DENSE
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        # Fitted with numpy's median (strategy="median" goes through masked arrays: 7 s against
        # 0.5 s on 750k rows x 10); _as_median_imputer makes it strategy="median" after the fit.
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy=np.median))]
        if estimator in _LINEAR:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        parts.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)),
        ]), categorical))
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0 if dense else 0.3)
    return Pipeline([("preprocess", pre), ("model", model)])


def _as_median_imputer(pipeline: Any) -> None:
    """Make the fitted numeric imputer the plain ``SimpleImputer(strategy="median")`` it is.

    Its ``statistics_`` are the column medians either way; saved with the callable, the
    model would name ``numpy.median`` in its pickle, which no model scanner should have to
    accept. Transforming reads only ``statistics_``.
    """
    import numpy as np

    pre = pipeline.named_steps["preprocess"]
    # Both the fitted transformers and the unfitted ones the ColumnTransformer keeps as its parameter.
    for name, transformer, _ in [*pre.transformers_, *pre.transformers]:
        if name == "numeric":
            imputer = transformer.named_steps["impute"]
            if imputer.strategy is np.median:
                imputer.strategy = "median"


def _matrix(columns: list[Any], kinds: list[str]) -> Any:
    import numpy as np

    if all(k == "numeric" for k in kinds):
        return np.column_stack(columns) if columns else np.empty((0, 0))
    x = np.empty((len(columns[0]), len(columns)), dtype=object)
    for j, values in enumerate(columns):
        x[:, j] = values
    return x


def train_table(
    csv_path: Path,
    *,
    target: str,
    model_dir: Path,
    task: Task = "classification",
    estimator: str = "random_forest",
    drop: Sequence[str] = (),
    column_types: Mapping[str, ColumnType] | None = None,
    hyperparameters: str | Mapping[str, Any] = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    max_rows: int = 10_000_000,
    max_categories: int = 1000,
) -> TrainResult:
    """Fit a preprocessing + estimator Pipeline on a CSV table and write ``model.joblib``.

    Args:
        csv_path: the verified training data (a header row, then one record per row).
        target: the column to predict.
        model_dir: the folder ``model.joblib`` is written to (written whole or not at all).
        task: ``classification``, ``regression`` or ``auto`` (regression for a numeric target
            with many distinct values, see :func:`many_valued`; else classification).
        estimator: a name from :data:`CLASSIFIERS` or :data:`REGRESSORS` (for the task).
        drop: columns that are not features (identifiers, leaks); each must exist.
        column_types: declared types (``numeric`` / ``categorical``) for some feature columns,
            instead of inference (e.g. a numeric-looking code that is really a category).
        hyperparameters: a JSON object (or mapping) passed to the estimator's ``set_params``.
        test_size: fraction held out for the metrics.
        random_state: seed for the split.
        max_rows: refuse larger tables.
        max_categories: refuse a categorical column with more distinct values (an identifier).

    Returns:
        The model path, the held-out metrics, the features (names, types, categories, in
        order), the task, the target and the classes.

    Raises:
        ColumnError: a column that cannot be used, named (unknown in ``drop``, entirely empty,
            a non-number in a column declared numeric, a target with missing values, a numeric
            target with many distinct values as a classification target...).
        InputError: unknown estimator or task, bad hyperparameters, or an unreadable table.
    """
    import joblib
    import numpy as np
    from sklearn.model_selection import train_test_split

    csv_path = Path(csv_path)
    artifact = csv_path.name
    if task not in _TASKS:
        raise InputError(f"task {task!r}: unknown (choose from {', '.join(_TASKS)})")
    if estimator not in CLASSIFIERS and estimator not in REGRESSORS:
        known = sorted(set(CLASSIFIERS) | set(REGRESSORS))
        raise InputError(f"estimator {estimator!r}: unknown (choose from {', '.join(known)})")
    if not 0.0 < float(test_size) < 1.0:
        raise InputError(f"test_size: expected a fraction between 0 and 1, got {test_size!r}")
    params = _parse_hyperparameters(hyperparameters)
    if task != "auto":
        _estimator(estimator, task, params)  # fail before reading the table
    declared = dict(column_types or {})
    if isinstance(drop, str):
        drop = [drop]
    dropped = list(dict.fromkeys(drop))

    def keep(header: list[str]) -> dict[str, str | None]:
        if target not in header:
            raise InputError(
                f"{artifact}: target column {target!r} not found (columns: {', '.join(header[:12])}"
                f"{', ...' if len(header) > 12 else ''})"
            )
        for name in dropped:
            if name not in header:
                raise ColumnError(artifact, name, f"named in drop, but the table has no such column "
                                                  f"(columns: {', '.join(header[:12])}{', ...' if len(header) > 12 else ''})")
            if name == target:
                raise ColumnError(artifact, name, "is the target; it cannot be dropped")
        for name, kind in declared.items():
            if name not in header:
                raise ColumnError(artifact, name, "named in column_types, but the table has no such column")
            if name == target or name in dropped:
                raise ColumnError(artifact, name, "named in column_types, but it is not a feature (target or dropped)")
            if kind not in _TYPES:
                raise ColumnError(artifact, name, f"column type {kind!r} is unknown (expected numeric or categorical)")
        wanted: dict[str, str | None] = {n: declared.get(n) for n in header if n != target and n not in dropped}
        if not wanted:
            raise InputError(f"{artifact}: no feature columns left after dropping {', '.join(dropped) or 'none'}")
        wanted[target] = "categorical"
        return wanted

    table = _read_table(csv_path, keep=keep, max_rows=max_rows)
    if table.rows < 10:
        raise InputError(f"{artifact}: {table.rows} rows are too few to train and evaluate (at least 10)")
    target_col = table.columns.pop(target)
    resolved, y = _target_values(table, target_col, task=task)
    model = _estimator(estimator, resolved, params)

    names = [n for n in table.header if n in table.columns]
    kinds: list[str] = []
    columns: list[Any] = []
    for name in names:
        kind, values = _feature_values(table, table.columns[name], max_categories=max_categories)
        kinds.append(kind)
        columns.append(values)
    table.columns.clear()
    x = _matrix(columns, kinds)
    del columns
    pipeline = _pipeline(estimator, model, kinds)

    stratify = None
    classes: list[str] = []
    if resolved == "classification":
        classes, counts = (list(a) for a in np.unique(y, return_counts=True))
        if min(counts) >= 2:
            stratify = y
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_size, random_state=random_state, stratify=stratify
        )
    except ValueError:
        # Too few rows per class for a stratified split of this size: split at random.
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=random_state)
    try:
        pipeline.fit(x_train, y_train)
    except ValueError as exc:
        raise InputError(f"{estimator}: cannot fit {artifact} ({str(exc).splitlines()[0][:200]})") from exc
    _as_median_imputer(pipeline)
    metrics: dict[str, Any] = {
        "task": resolved,
        "estimator": estimator,
        "rows": table.rows,
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        **_metrics(pipeline, resolved, x_test, y_test),
    }
    features = _describe(names, kinds, pipeline)
    from chainproof.drift import build_profile, model_scores

    # The drift reference: the training table's bins and the model's scores on held-out rows
    # (what serving sees is new data, not the rows the model was fitted on).
    fitted = list(getattr(pipeline, "classes_", []))
    score_kind = ("regression prediction" if resolved == "regression"
                  else f"P({fitted[1]})" if len(fitted) == 2 else "top class probability")
    profile = build_profile(x, features=features, scores=model_scores(pipeline, x_test), score_kind=score_kind)
    path = _dump(pipeline, Path(model_dir), joblib)
    return TrainResult(
        model_path=path, metrics=metrics, features=features, task=resolved, target=target,
        classes=[str(c) for c in classes], profile=profile,
    )


def _metrics(pipeline: Any, task: str, x_test: Any, y_test: Any) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    predicted = pipeline.predict(x_test)
    if task == "regression":
        return {
            "r2": round(float(m.r2_score(y_test, predicted)), 6),
            "mae": round(float(m.mean_absolute_error(y_test, predicted)), 6),
            "rmse": round(float(np.sqrt(m.mean_squared_error(y_test, predicted))), 6),
        }
    out = {
        "accuracy": round(float(m.accuracy_score(y_test, predicted)), 6),
        "f1": round(float(m.f1_score(y_test, predicted, average="macro", zero_division=0)), 6),
    }
    fitted = list(pipeline.classes_)
    if len(fitted) == 2 and hasattr(pipeline, "predict_proba") and len(set(y_test)) == 2:
        proba = pipeline.predict_proba(x_test)[:, 1]
        out["roc_auc"] = round(float(m.roc_auc_score(y_test == fitted[1], proba)), 6)
    return out


def _describe(names: list[str], kinds: list[str], pipeline: Any) -> list[dict[str, Any]]:
    categories: dict[str, list[str]] = {}
    pre = pipeline.named_steps["preprocess"]
    if "categorical" in pre.named_transformers_:
        onehot = pre.named_transformers_["categorical"].named_steps["onehot"]
        cat_names = [n for n, k in zip(names, kinds) if k == "categorical"]
        for name, cats in zip(cat_names, onehot.categories_):
            categories[name] = [str(c) for c in cats]
    out: list[dict[str, Any]] = []
    for name, kind in zip(names, kinds):
        entry: dict[str, Any] = {"name": name, "type": kind}
        if kind == "categorical":
            entry["categories"] = categories.get(name, [])
        out.append(entry)
    return out


def _dump(pipeline: Any, model_dir: Path, joblib: Any) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.joblib"
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".joblib.part", dir=model_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            joblib.dump(pipeline, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def prepare_rows(rows: Iterable[Mapping[str, Any] | Sequence[Any]], *, features: Sequence[Mapping[str, Any]]) -> Any:
    """Build the model's input from raw rows, with the conversion training applied to the CSV.

    Args:
        rows: each row a mapping of column name to cell, or a sequence of cells in the
            recorded feature order. A cell is a CSV string, a number, or ``None``; an empty
            (or whitespace) string and ``None`` are missing values. Extra keys are ignored.
        features: :attr:`TrainResult.features` (names, types, in order).

    Returns:
        A 2-D array (``float64`` when every feature is numeric, else ``object``) to pass to
        the loaded pipeline's ``predict``.

    Raises:
        ColumnError: a row lacks a feature, or a numeric feature's cell is not a finite number.
        InputError: a row has the wrong number of cells.
    """
    import numpy as np

    names = [str(f["name"]) for f in features]
    kinds = [str(f["type"]) for f in features]
    out: list[list[Any]] = []
    for r, row in enumerate(rows, start=1):
        if isinstance(row, Mapping):
            missing = [n for n in names if n not in row]
            if missing:
                raise ColumnError(f"row {r}", missing[0], "missing from the row")
            cells = [row[n] for n in names]
        else:
            cells = list(row)
            if len(cells) != len(names):
                raise InputError(f"row {r}: {len(cells)} cells, expected {len(names)} ({', '.join(names[:12])})")
        values: list[Any] = []
        for name, kind, cell in zip(names, kinds, cells):
            if cell is None or (isinstance(cell, str) and (not cell or cell.isspace())):
                values.append(math.nan)
            elif kind == "numeric":
                try:
                    v = float(cell)
                except (TypeError, ValueError):
                    raise ColumnError(f"row {r}", name, f"numeric, but the row holds {_show(str(cell))}") from None
                if not math.isfinite(v):
                    raise ColumnError(f"row {r}", name, f"{_show(str(cell))} is not a finite number")
                values.append(v)
            else:
                values.append(cell if isinstance(cell, str) else str(cell))
        out.append(values)
    if all(k == "numeric" for k in kinds):
        return np.asarray(out, dtype=np.float64).reshape(len(out), len(names))
    x = np.empty((len(out), len(names)), dtype=object)
    for i, values in enumerate(out):
        x[i, :] = values
    return x


def train_classifier(
    csv_path: Path,
    *,
    target: str,
    model_dir: Path,
    estimator: str = "random_forest",
    hyperparameters: str | dict[str, Any] = "{}",
    test_size: float = 0.25,
    random_state: int = 0,
    max_rows: int = 10_000_000,
    drop: Sequence[str] = (),
) -> TrainResult:
    """Fit a classifier on a CSV table and write ``model.joblib``: :func:`train_table` with ``task="classification"``.

    Args:
        csv_path: the verified training data.
        target: the label column.
        model_dir: the folder ``model.joblib`` is written to.
        estimator: a name from :data:`CLASSIFIERS`.
        hyperparameters: a JSON object (or dict) passed to ``set_params``.
        test_size: fraction held out for the metrics.
        random_state: seed for the split.
        max_rows: refuse larger files.
        drop: columns that are not features.

    Returns:
        As :func:`train_table`.

    Raises:
        ColumnError: as :func:`train_table`.
        InputError: as :func:`train_table`.
    """
    return train_table(
        csv_path, target=target, model_dir=model_dir, task="classification", estimator=estimator,
        drop=drop, hyperparameters=hyperparameters, test_size=test_size, random_state=random_state,
        max_rows=max_rows,
    )
