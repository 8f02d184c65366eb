"""A conventional baseline trained on the pipeline's train split (scikit-learn, imported on use)."""

import time

import pyarrow as pa

from assay.errors import ProviderSetupError
from assay.providers.base import BatchProvider

ESTIMATORS = ("tfidf-logreg", "tfidf-svm", "majority")


def _require_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ProviderSetupError("the sklearn provider needs scikit-learn: pip install 'assay[sklearn]'") from None


class SklearnProvider(BatchProvider):
    """TF-IDF features of the input fields and a linear classifier predicting the reference."""

    free_to_redo = True  # predicting again is cheap and gives the same labels
    cache_responses = False

    def identity(self) -> dict:
        return {"provider": "sklearn", "estimator": self.cfg.estimator or "tfidf-logreg", "train": self.cfg.train}

    def _fields(self) -> list[str]:
        # lazy: keeps pyarrow out of start-up
        from assay.dataset import template_fields

        ds = self.ctx.dataset
        p = self.ctx.prompt
        return ds.input or (template_fields(p.template) if p is not None and p.template is not None else ["text"])

    def _text(self, table: pa.Table) -> list[str]:
        cols = [table[f].cast(pa.string()).to_pylist() for f in self._fields()]
        return [" ".join(v or "" for v in vals) for vals in zip(*cols)]

    def _fit(self):
        _require_sklearn()
        # lazy: keeps pyarrow out of start-up
        from assay.dataset import read_source

        ds = self.ctx.dataset
        train_src = self.ctx.resolve_path(self.cfg.train or ds.train)
        table = read_source(train_src)
        if ds.reference not in table.column_names:
            raise ProviderSetupError(f"train file {train_src} has no reference column {ds.reference!r}")
        X, y = self._text(table), table[ds.reference].cast(pa.string()).to_pylist()
        t0 = time.perf_counter()
        kind = self.cfg.estimator or "tfidf-logreg"
        # lazy: optional (scikit-learn, the sklearn extra)
        from sklearn.pipeline import make_pipeline

        if kind == "majority":
            # lazy: optional (scikit-learn, the sklearn extra)
            from sklearn.dummy import DummyClassifier

            model = DummyClassifier(strategy="most_frequent")
            model.fit([[0]] * len(y), y)
            self._predict = lambda texts: model.predict([[0]] * len(texts))
        else:
            # lazy: optional (scikit-learn, the sklearn extra)
            from sklearn.feature_extraction.text import TfidfVectorizer

            if kind == "tfidf-svm":
                # lazy: optional (scikit-learn, the sklearn extra)
                from sklearn.svm import LinearSVC

                clf = LinearSVC()
            else:
                # lazy: optional (scikit-learn, the sklearn extra)
                from sklearn.linear_model import LogisticRegression

                clf = LogisticRegression(max_iter=1000)
            model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), clf)
            model.fit(X, y)
            self._predict = model.predict
            if hasattr(clf, "predict_proba"):  # the class probability is the answer's confidence (cascades use it)
                self._proba = model.predict_proba
                self._classes = [str(c) for c in clf.classes_]
        self.train_s = time.perf_counter() - t0
        self.train_rows = len(y)
        self.compute_s = 0.0

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        if not hasattr(self, "_predict"):
            self._fit()
        texts = self._text(rows)
        t0 = time.perf_counter()
        n = len(texts)
        conf = [None] * n
        if getattr(self, "_proba", None) is not None and texts:
            proba = self._proba(texts)
            best = proba.argmax(axis=1)
            preds = [self._classes[i] for i in best]
            conf = [float(p) for p in proba.max(axis=1)]
        else:
            preds = list(self._predict(texts)) if texts else []
        dt = time.perf_counter() - t0
        self.compute_s += dt
        per = dt / n if n else 0.0
        return {
            "output": [str(p) for p in preds],
            "prompt_tokens": [None] * n,
            "completion_tokens": [None] * n,
            "latency_s": [per] * n,
            "error": [None] * n,
            "confidence": conf,
        }

    def stats(self) -> dict:
        return {
            "train_s": getattr(self, "train_s", 0.0),
            "compute_s": getattr(self, "compute_s", 0.0),
            "train_rows": getattr(self, "train_rows", 0),
        }
