"""RLM's two records (Models, Generation), the name shorthand, and RLM.with_policy's copy."""

from __future__ import annotations

import pytest

from rlm_host import RLM, Generation, Models
from rlm_host.rlm import local_lm
from rlm_host.errors import ConfigError
from rlm_host.rlm.lm import LMClient, PriceTable
from rlm_host.policy import load_policy

PRICES = PriceTable({"root": (1.0, 1.0), "sub": (0.5, 0.5)})
URL = "http://127.0.0.1:9/v1"  # never called: these tests only build RLMs


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint named by the environment, as a bare model name needs."""
    monkeypatch.setenv("OPENAI_BASE_URL", URL)


def test_a_model_name_is_shorthand_for_models(endpoint: None) -> None:
    """RLM("root") is RLM(Models(model="root")): the root model answers sub-calls on the same client."""
    rlm = RLM("root", max_iterations=3)
    assert rlm.models == Models(model="root") and rlm.model == rlm.sub_model == "root"
    assert rlm.sub_lm is rlm.lm and rlm.generation == Generation()


def test_models_make_their_clients_and_close_only_those() -> None:
    """A sub_base_url gets its own client; clients the RLM made are closed by close(), a passed-in one is not."""
    theirs = LMClient(base_url=URL, prices=PRICES)
    with RLM(Models("root", sub_model="sub", lm=theirs, sub_base_url=URL, timeout_s=7, prices=PRICES)) as rlm:
        made = rlm.sub_lm
    assert rlm.lm is theirs and made is not theirs and rlm.sub_model == "sub" and rlm.prices is PRICES
    assert made._client.is_closed() and not theirs._client.is_closed()
    assert made._client.timeout == 7
    theirs.close()


def test_generation_reaches_the_opening_of_the_conversation(endpoint: None) -> None:
    """system_prompt replaces the shipped prompt; few_shot=False leaves the example turns out."""
    shown = RLM("root", generation=Generation(system_prompt="Be brief.", few_shot=False)).opening
    assert shown == [{"role": "system", "content": "Be brief."}]
    default = RLM("root").opening
    assert default[0]["content"] != "Be brief." and len(default) > 1


def test_max_iterations_below_one_is_refused(endpoint: None) -> None:
    """max_iterations=0 is a ConfigError naming the value."""
    with pytest.raises(ConfigError, match="at least 1 \\(got 0\\)"):
        RLM("root", max_iterations=0)


def test_with_policy_is_a_copy_under_another_policy_sharing_the_clients() -> None:
    """The copy has the new policy and this RLM's clients; closing the copy closes none: the original owns them."""
    rlm = RLM(Models("root", base_url=URL, prices=PRICES), max_depth=3, max_iterations=4)
    strict = rlm.with_policy("strict")
    assert strict.policy.name == "strict" and rlm.policy.name == "standard"
    assert rlm.policy.subcalls.max_depth == 3
    assert strict.policy.subcalls.max_depth == load_policy("strict").subcalls.max_depth  # the policy as given
    assert strict.lm is rlm.lm and strict.max_iterations == 4 and strict.models is rlm.models
    strict.close()
    assert not rlm.lm._client.is_closed()
    rlm.close()
    assert rlm.lm._client.is_closed()


def test_with_policy_checks_the_cost_budget_again() -> None:
    """A USD budget with a sub-model of unknown price is refused by with_policy, as by the constructor."""
    rlm = RLM(Models("root", sub_model="unpriced", base_url=URL, prices=PRICES))
    with pytest.raises(ConfigError, match="price of model 'unpriced' is unknown"):
        rlm.with_policy(load_policy("standard").with_subcalls(max_cost_usd=1.0))
    rlm.close()


def test_the_embedded_models_go_to_their_own_servers() -> None:
    """local_lm.models_for puts the root and sub-calls on their servers; GENERATION is the small-model record."""
    servers = {role: local_lm.Server(pid=0, port=port, model=f"{role}-model", path="", log="")
               for role, port in (("root", 8001), ("sub", 8002))}
    models = local_lm.models_for(servers, timeout_s=30)
    assert models == Models("root-model", sub_model="sub-model", base_url="http://127.0.0.1:8001/v1",
                            sub_base_url="http://127.0.0.1:8002/v1", timeout_s=30)
    assert local_lm.GENERATION.root_stop == ("\n```\n",) and local_lm.GENERATION.root_max_tokens == 512
