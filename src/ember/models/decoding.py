"""Greedy and beam-search decoding for encoder–decoder models (`ember.models.translation.Translator`).

Both take padded source ids (batch, steps) and return, for each sentence, the generated target ids without
[BOS] and [EOS]. Each sentence stops at [EOS] or at its length limit (`max_length`, or by default
`1.5 x source tokens + 10`); finished sentences leave the batch, so a long one does not keep the others'
work going. With `use_cache=True` (the default) each step feeds only the newest token through the
decoder, whose attention keys and values of earlier steps stay in a cache; `use_cache=False` recomputes
the whole prefix at every step: the same result, more work (`benchmarks/decode.py` compares them).
"""
import torch

from ember.models.translation import BOS, EOS, PAD, UNK


LONGEST = 512  # the default limit never exceeds this many target tokens, however long the source


def length_limits(source: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Most target tokens each sentence may get: `max_length`, or 1.5 x its source tokens + 10 (at most 512)."""
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        return torch.full((len(source),), int(max_length))
    tokens = (source != PAD).sum(1)
    return ((tokens.float() * 1.5).ceil().long() + 10).clamp(max=LONGEST)


def _never(logits: torch.Tensor) -> torch.Tensor:
    """Padding, [BOS] and [UNK] are never produced."""
    logits[:, [PAD, BOS, UNK]] = float("-inf")
    return logits


@torch.inference_mode()
def greedy_search(model, source, *, max_length: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """The most probable next token at each step, until [EOS] or the length limit."""
    if len(source) == 0:
        return []
    model.eval()
    source = source.to(model.device)
    limits = length_limits(source, max_length).to(source.device)
    state = model.encode(source)
    cache = model.new_cache(state) if use_cache else None
    prefix = torch.full((len(source), 1), BOS, dtype=torch.long, device=source.device)
    rows = torch.arange(len(source), device=source.device)  # the sentence of each row still decoding
    results: list[list[int]] = [[] for _ in range(len(source))]
    for step in range(int(limits.max()) + 1):
        logits = _never(model.next_logits(prefix, state, cache).float())
        token = logits.argmax(-1)
        token = torch.where(step >= limits[rows], EOS, token)  # at the limit: end
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        ended = token == EOS
        if ended.any():
            for row in ended.nonzero().flatten().tolist():
                results[int(rows[row])] = prefix[row, 1:-1].tolist()
            keep = (~ended).nonzero().flatten()
            if len(keep) == 0:
                break
            rows, prefix = rows[keep], prefix[keep]
            state, cache = model.reorder(state, cache, keep)
    return results


@torch.inference_mode()
def beam_search(model, source, *, beam_size: int = 4, length_penalty: float = 1.0, max_length: int | None = None,
                use_cache: bool = True) -> list[list[int]]:
    """The best of `beam_size` hypotheses kept at each step, by log-probability / length ** length_penalty.

    A sentence ends when it has `beam_size` finished hypotheses and none of its live ones can still beat
    them at the current length (Hugging Face's rule), or at its length limit. `beam_size=1` is greedy search.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if len(source) == 0:
        return []
    model.eval()
    source = source.to(model.device)
    device, k = source.device, beam_size
    limits = length_limits(source, max_length).to(device)
    limit = limits.tolist()
    state = model.encode(source)
    state, _ = model.reorder(state, None, torch.arange(len(source), device=device).repeat_interleave(k))
    cache = model.new_cache(state) if use_cache else None
    prefix = torch.full((len(source) * k, 1), BOS, dtype=torch.long, device=device)
    scores = torch.full((len(source), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # every beam starts the same: keep one of them
    scores = scores.flatten()
    sentences = list(range(len(source)))  # the sentence of each block of k rows
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(len(source))]
    for step in range(int(limits.max()) + 1):
        n = len(sentences)
        log_probs = torch.log_softmax(_never(model.next_logits(prefix, state, cache).float()), dim=-1)
        at_limit = (step >= limits[sentences]).repeat_interleave(k)
        if at_limit.any():  # only [EOS] may follow
            end = log_probs[at_limit, EOS].clone()
            log_probs[at_limit] = float("-inf")
            log_probs[at_limit, EOS] = end
        vocabulary = log_probs.shape[-1]
        candidates = (scores[:, None] + log_probs).view(n, k * vocabulary)
        top, index = candidates.topk(2 * k, dim=1)
        beam, token = index // vocabulary, index % vocabulary
        ends = (token == EOS) & torch.isfinite(top)
        ends[:, k:] = False  # an ending outside the best k is not taken (it could not be among the k best)
        normalizer = float(step + 1) ** length_penalty
        for i, j in ends.nonzero().tolist():
            row = i * k + int(beam[i, j])
            finished[sentences[i]].append((float(top[i, j]) / normalizer, prefix[row, 1:].tolist()))
        live_scores, pick = top.masked_fill(token == EOS, float("-inf")).topk(k, dim=1)
        rows = (torch.arange(n, device=device)[:, None] * k + beam.gather(1, pick))
        tokens = token.gather(1, pick)
        best_live = (live_scores[:, 0] / normalizer).tolist()  # one host copy per step, not one per sentence
        keep = [i for i, sentence in enumerate(sentences)
                if step < limit[sentence] and not _settled(finished[sentence], k, best_live[i])]
        if not keep:
            break
        keep_index = torch.tensor(keep, device=device)
        rows, tokens = rows[keep_index].flatten(), tokens[keep_index].flatten()
        prefix = torch.cat([prefix[rows], tokens[:, None]], dim=1)
        scores = live_scores[keep_index].flatten()
        sentences = [sentences[i] for i in keep]
        state, cache = model.reorder(state, cache, rows)
    return [max(hypotheses, key=lambda h: h[0])[1] if hypotheses else [] for hypotheses in finished]


def _settled(hypotheses: list, k: int, best_live: float) -> bool:
    """Whether a sentence has its k best finished hypotheses (kept sorted, best first) and none of its live
    ones can still beat the worst of them at the current length (Hugging Face's rule)."""
    if len(hypotheses) < k:
        return False
    hypotheses.sort(key=lambda h: -h[0])
    del hypotheses[k:]
    return hypotheses[-1][0] >= best_live


def translate_ids(model, source, *, beam_size: int = 1, length_penalty: float = 1.0, max_length=None,
                  use_cache: bool = True, batch_size: int = 128) -> list[list[int]]:
    """Target ids for every row of `source`, decoded `batch_size` sentences at a time (longest first)."""
    source = torch.as_tensor(source, dtype=torch.long)
    lengths = (source != PAD).sum(1)
    order = torch.argsort(lengths, descending=True, stable=True)  # similar lengths together: less padding
    results: list[list[int] | None] = [None] * len(source)
    for start in range(0, len(source), batch_size):
        index = order[start:start + batch_size]
        batch = source[index]
        batch = batch[:, :max(1, int(lengths[index].max()))]
        if beam_size == 1:
            decoded = greedy_search(model, batch, max_length=max_length, use_cache=use_cache)
        else:
            decoded = beam_search(model, batch, beam_size=beam_size, length_penalty=length_penalty,
                                  max_length=max_length, use_cache=use_cache)
        for i, ids in zip(index.tolist(), decoded):
            results[i] = ids
    return results
