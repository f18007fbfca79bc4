"""Cross-modal retrieval evaluation: recall@k of finding a row's own paired item among all validation rows."""
from __future__ import annotations

import itertools

import torch

KS = (1, 5, 10)


@torch.no_grad()
def retrieval_recall(model, batches, modalities, max_rows: int = 5000) -> dict:
    """{"image->text": {"recall@1": r, ...}, ...} over validation rows where both modalities are present, for
    every ordered pair of the modalities with a retrieval projection.

    Each query's own row is the one correct answer among up to `max_rows` candidates (the first rows seen).
    """
    model.eval()
    # Both ways between every two modalities the model projects (those whose record takes part in retrieval).
    modalities = [m for m in modalities if m in model.retrieval]
    wanted = list(itertools.permutations(modalities, 2))
    if not wanted:
        return {}
    vectors: dict[str, list] = {m: [] for m in modalities}
    masks: dict[str, list] = {m: [] for m in modalities}
    rows = 0
    for batch in batches:
        projected = model.retrieval_embeddings(model.encode(batch))
        for m in modalities:
            vectors[m].append(projected[m].float().cpu())
            masks[m].append(batch[f"{m}_present"].cpu() > 0.5)
        rows += len(batch["label"])
        if rows >= max_rows:
            break
    report = {}
    for query, candidate in wanted:
        both = torch.cat(masks[query])[:max_rows] & torch.cat(masks[candidate])[:max_rows]
        q = torch.cat(vectors[query])[:max_rows][both]
        c = torch.cat(vectors[candidate])[:max_rows][both]
        if len(q) < 2:
            continue
        similarity = q @ c.T  # (n, n); the diagonal holds each row's own pair
        own = similarity.diagonal().unsqueeze(1)
        rank = (similarity > own).sum(1)  # 0 = the own pair scored highest
        report[f"{query}->{candidate}"] = {
            f"recall@{k}": float((rank < k).float().mean()) for k in KS
        } | {"rows": int(len(q))}
    return report


def flat_metrics(report: dict) -> dict:
    """{"retrieval/image_to_text/recall_at_1": r, ...} for MLflow, whose metric names may not contain '@'."""
    return {
        f"retrieval/{direction.replace('->', '_to_')}/{k.replace('@', '_at_')}": v
        for direction, scores in report.items()
        for k, v in scores.items()
        if k != "rows"
    }


__all__ = ["retrieval_recall", "flat_metrics"]
