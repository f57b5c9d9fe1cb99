"""Synthetic tables: the codec round-trips a mixed table exactly; synthetic values keep the table's categories, dtypes
and integer columns; the fidelity, utility and privacy metrics against independent computations; a synthesizer
that copies its rows is flagged; the DP accountant against Opacus'; the mixed tables registered as datasets; the
estimator conventions; bad input in one line; the CLI's synth, anomaly and augment commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import one_line_error
from sklearn.base import clone

from genlab.apps.table_codec import TableCodec
from genlab.apps.table_metrics import evaluate, privacy
from genlab.apps.tabular import TabularSynthesizer, split_frame
from genlab.errors import GenlabError


def mixed_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two groups: a bimodal income tied to a category, an integer count, a boolean, missing values in both kinds."""
    rng = np.random.default_rng(seed)
    g = rng.random(n) < 0.3
    income = np.where(g, rng.normal(90, 5, n), rng.normal(30, 4, n)).round(2)
    income[rng.random(n) < 0.05] = np.nan
    city = np.where(g, rng.choice(["Paris", "Rome"], n, p=[0.8, 0.2]), rng.choice(["Oslo", "Rome"], n, p=[0.7, 0.3]))
    city = city.astype(object)
    city[rng.random(n) < 0.05] = None
    return pd.DataFrame({"income": income, "children": rng.poisson(np.where(g, 3, 1)).astype(np.int64),
                         "city": city, "owner": g})


@pytest.fixture(scope="module")
def table():
    return mixed_table()


def test_codec_round_trip_is_exact(table):
    codec = TableCodec(categorical=["city"]).fit(table)
    inc = next(c for c in codec.columns if c.name == "income")
    assert len(inc.means) == 2 and sorted(round(m) for m in inc.means) == [30, 90]  # the two modes found
    back = codec.decode(codec.encode(table))
    pd.testing.assert_frame_equal(back, table)


def test_codec_keeps_odd_columns():
    """A category dtype with its order, tiny floats (no rounding to 6 decimals), non-string column names."""
    df = pd.DataFrame({0: pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True),
                       1: [1.5e-7, 2.25e-7, 3e-10]})
    codec = TableCodec().fit(df)
    back = codec.decode(codec.encode(df.rename(columns=str)))
    assert list(back.columns) == ["0", "1"] and back["0"].dtype == df[0].dtype  # categories and order kept
    np.testing.assert_allclose(back["1"], df[1], rtol=1e-9)


def test_gower_distance_per_column_is_at_most_one():
    from genlab.apps.table_metrics import gower_space, nearest

    t = pd.DataFrame({"year": [2000.0, 2010.0, np.nan], "c": ["a", "b", "a"]})
    codec = TableCodec(["c"]).fit(t)
    (g,) = gower_space([t], codec)
    d = lambda i, j: float(np.abs(g[i] - g[j]).sum())
    assert d(0, 1) == pytest.approx(1.0)  # years at both ends (1/2) and different categories (1/2)
    assert d(0, 2) == pytest.approx(0.5)  # present vs missing: 1 for that column, averaged over 2
    unseen = gower_space([pd.DataFrame({"year": [2000.0], "c": ["z"]})], codec)[0]
    assert nearest(unseen, g[:1])[0] == pytest.approx(0.5)  # a category never seen differs by 1 too


def test_registered_tables_load():
    from genlab.data import load_dataset
    from genlab.data.tables import load_frame

    shapes = {n: load_frame(n).shape for n in ("credit", "wage", "penguins")}
    assert shapes == {"credit": (400, 11), "wage": (3000, 11), "penguins": (344, 8)}
    pen = load_dataset("penguins", target="species")
    assert pen.spec.class_names == ["Adelie", "Chinstrap", "Gentoo"] and len(pen) + len(
        load_dataset("penguins", "test", target="species")) == 333  # complete rows only
    raw = load_frame("penguins")
    back = TableCodec("infer").fit(raw)
    pd.testing.assert_frame_equal(back.decode(back.encode(raw)), raw)


def test_copula_keeps_categories_dtypes_and_missing_rates(table):
    s = TabularSynthesizer(kind="copula", categorical=["city"], random_state=1).fit(table)
    fake = s.sample(4000)
    assert list(fake.columns) == list(table.columns) and (fake.dtypes == table.dtypes).all()
    assert set(fake["city"].dropna()) <= {"Oslo", "Paris", "Rome"}
    assert (fake["children"] == fake["children"].round()).all() and fake["children"].dtype == np.int64
    for col in ("income", "city"):
        assert abs(fake[col].isna().mean() - table[col].isna().mean()) < 0.02
    # the dependence survives, weakened (a Gaussian copula's one correlation cannot hold a bimodal link): owners
    # earn 60 more in the real table, about 18 more in the copula's
    assert fake.groupby("owner")["income"].mean().diff().iloc[-1] > 10


def test_fidelity_scores_against_independent_computations(table):
    from scipy.stats import ks_2samp

    codec = TableCodec(["city"]).fit(table)
    same = evaluate(table, table, table, codec)["fidelity"]
    assert same["overall"] == pytest.approx(1.0)
    other = table.copy()
    other["city"] = other["city"].replace("Rome", "Oslo")
    other["income"] = other["income"] * 1.1
    f = evaluate(table, other, table, codec)["fidelity"]
    p = table["city"].fillna("<NA>").value_counts(normalize=True)
    q = other["city"].fillna("<NA>").value_counts(normalize=True)
    tv = 0.5 * p.subtract(q, fill_value=0).abs().sum()
    assert f["columns"]["city"] == pytest.approx(1 - tv)
    ks = ks_2samp(table["income"].dropna(), other["income"].dropna()).statistic
    assert f["columns"]["income"] == pytest.approx(1 - ks)
    rho = table[["income", "children"]].corr().iloc[0, 1]
    assert f["pairs"]["income / children"] == pytest.approx(1 - abs(rho - rho) / 2)  # scaling keeps Pearson's rho


def test_a_copying_synthesizer_is_flagged(table):
    train, hold = split_frame(table, 0.3, seed=0)
    codec = TableCodec(["city"]).fit(train)
    copy = privacy(train, train.sample(frac=1, random_state=0), hold, codec)  # every row, shuffled
    assert copy["dcr_synthetic_median"] == 0 and copy["exact_copies"] == 1.0 and copy["copies_flagged"]
    assert copy["mia_auc"] > 0.95  # members are exactly where the synthetic rows are
    fresh = privacy(train, mixed_table(len(train), seed=5), hold, codec)  # new draws from the same distribution
    assert not fresh["copies_flagged"] and abs(fresh["mia_auc"] - 0.5) < 0.1


def test_vae_synthesizer_learns_the_table(table):
    train, hold = split_frame(table, 0.25, seed=0)
    s = TabularSynthesizer(kind="vae", categorical=["city"], steps=400, options={"hidden": [128, 128]}).fit(train)
    fake = s.sample(len(train))
    assert set(fake["city"].dropna()) <= set(table["city"].dropna()) and fake["children"].dtype == np.int64
    m = evaluate(train, fake, hold, s.codec_, target="owner")
    assert m["fidelity"]["column_shapes"] > 0.8 and not m["privacy"]["copies_flagged"]
    assert m["utility"]["synthetic"]["accuracy"] > 0.85  # owners are told apart from what the fake rows teach


def test_dp_accountant_matches_opacus():
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis import rdp

    from genlab.apps.private import ORDERS, dp_epsilon, noise_for

    for q, sigma, steps, delta in [(256 / 3000, 1.1, 2000, 1e-5), (0.01, 0.8, 500, 1e-6), (1.0, 5.0, 10, 1e-5)]:
        orders = list(ORDERS)
        theirs, _ = rdp.get_privacy_spent(orders=orders, delta=delta,
                                          rdp=rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders))
        assert dp_epsilon(q, sigma, steps, delta) == pytest.approx(theirs, rel=1e-9)
        acc = RDPAccountant()  # Opacus' default orders include fractional ones: a bound as tight or tighter
        acc.history = [(sigma, q, steps)]
        assert acc.get_epsilon(delta) <= dp_epsilon(q, sigma, steps, delta) * (1 + 1e-9)
        assert dp_epsilon(q, sigma, steps, delta) <= acc.get_epsilon(delta) * 1.05
    sigma = noise_for(1.0, 0.1, 300, 1e-5)
    assert 0.99 < dp_epsilon(0.1, sigma, 300, 1e-5) <= 1.0


def test_dp_training_spends_the_budget(table):
    s = TabularSynthesizer(kind="ddpm", categorical=["city"], steps=20, batch_size=32, epsilon=5.0,
                           options={"net.hidden": [32, 32]}).fit(table)
    assert 4.9 < s.epsilon_ <= 5.0 and s.delta_ == pytest.approx(1 / (10 * len(table)))
    assert set(s.sample(50)["city"].dropna()) <= {"Oslo", "Paris", "Rome"}


def test_conventions_and_persistence(table, tmp_path):
    s = TabularSynthesizer(kind="copula", categorical=["city"], random_state=3)
    assert clone(s).get_params() == s.get_params() and s.fit(table) is s
    a = s.sample(50, seed=7)
    loaded = TabularSynthesizer.load(s.save(tmp_path / "synth"))
    pd.testing.assert_frame_equal(loaded.sample(50, seed=7), a)
    v = TabularSynthesizer(kind="vae", categorical=["city"], steps=5).fit(table)
    pd.testing.assert_frame_equal(TabularSynthesizer.load(v.save(tmp_path / "v")).sample(20, seed=1),
                                  v.sample(20, seed=1))


@pytest.mark.parametrize("make, pattern", [
    (lambda t: TabularSynthesizer(kind="copula").fit(t), "city hold text but are not declared categorical"),
    (lambda t: TabularSynthesizer(kind="copula", categorical=["town"]).fit(t), "town, not columns"),
    (lambda t: TabularSynthesizer(kind="gan", categorical=["city"], epsilon=1).fit(t), "for vae, ddpm"),
    (lambda t: TabularSynthesizer(kind="vae", categorical=["city"], epsilon=-1).fit(t), "epsilon must be"),
    (lambda t: TabularSynthesizer(kind="copula", categorical=["city"]).fit(t).sample(0), "positive whole number"),
    (lambda t: TabularSynthesizer(kind="copula").fit(t.iloc[:0]), "table is empty"),
    (lambda t: split_frame(t, 0.9, 0), "holdout must be"),
    (lambda t: TabularSynthesizer(kind="copula", categorical=["city"]).fit(t.assign(income=np.inf)), "inf"),
    (lambda t: TableCodec("city").fit(pd.concat([t, t["income"]], axis=1)), "more than one column named income"),
    (lambda t: TableCodec("city").fit(t.assign(when=pd.Timestamp("2020-01-01"))), "dates or durations"),
    (lambda t: TabularSynthesizer(kind="vae", categorical="city", epsilon=1, options={"free_bits": 0.1}).fit(t),
     "free_bits"),
])
def test_bad_input_is_one_clear_error(table, make, pattern):
    with pytest.raises(GenlabError, match=pattern):
        make(table)


def test_cli_synth_anomaly_augment(cli, tmp_path, table):
    out = tmp_path / "synth"
    code, stdout, err = cli("synth", "penguins", "--kind", "copula", "--out", out)
    assert code == 0, err
    fake = pd.read_csv(out / "synthetic.csv")
    assert len(fake) == 275 and set(fake["species"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    html = (out / "report.html").read_text()
    assert "Fidelity" in html and "membership-inference" in html and "<script" not in html and "utility" in stdout
    code, _, err = cli("synth", "penguins", "--kind", "copula", "--out", out)  # nothing written is replaced
    one_line_error(code, err, "pass --overwrite")
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    code, _, err = cli("synth", str(csv), "--out", tmp_path / "s2")
    one_line_error(code, err, "not declared categorical")

    rng = np.random.default_rng(0)
    normal = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    normal.to_csv(tmp_path / "normal.csv", index=False)
    odd = pd.concat([normal.iloc[:50], normal.iloc[:10] * 6])
    odd.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli("anomaly", "fit", str(tmp_path / "normal.csv"), "--kind", "maf", "--steps", "150",
                       "--out", tmp_path / "det", "--no-progress")
    assert code == 0, err
    code, _, err = cli("anomaly", "score", tmp_path / "det", str(tmp_path / "new.csv"), "--out", tmp_path / "s.csv")
    scores = pd.read_csv(tmp_path / "s.csv")
    assert code == 0 and len(scores) == 60 and scores["anomaly"].iloc[50:].all()  # 6x the scale: all flagged
    assert scores["score"].iloc[50:].min() > scores["score"].iloc[:50].median()

    imb = normal.assign(label=np.where(np.arange(300) < 30, "rare", "common"))
    imb.to_csv(tmp_path / "imb.csv", index=False)
    code, _, err = cli("augment", str(tmp_path / "imb.csv"), "--target", "label", "--kind", "vae", "--steps", "20",
                       "--out", tmp_path / "bal.csv", "--no-progress")
    bal = pd.read_csv(tmp_path / "bal.csv")
    assert code == 0 and bal["label"].value_counts().to_dict() == {"common": 270, "rare": 270}
    code, _, err = cli("augment", str(tmp_path / "imb.csv"), "--target", "nope", "--out", tmp_path / "b2.csv")
    one_line_error(code, err, "target 'nope' is not a column")
