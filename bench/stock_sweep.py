"""The stock sweep: what a user writes from Ray Tune's PyTorch and MLflow examples, without hpo-cls.

    python bench/stock_sweep.py --root data/cifar10-mini --trials 6 --epochs 4   # prints best_val_acc=...

ResNet-18 (torchvision, ImageNet stem) trained from scratch with AdamW; random search over the learning rate
(log-uniform 1e-4..1e-2), dropout before the classifier and label smoothing; flip-only augmentation;
FIFO (every trial runs all epochs); a checkpoint reported every epoch; ``MLflowLoggerCallback``.
``bench/quality.py`` runs it next to ``hpo-cls sweep`` + ``hpo-cls promote``.

The bench's one addition, a measurement that changes no training: each epoch also reports ``val_heldout_acc``,
the accuracy on the held-out half of val (``hpo_cls.promote.val_split``, the half promote never selects on), so
the stock sweep's best trial (chosen, as a user would, by val_acc over all of val) compares with promote's
held-out figures on the same images.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import ray
import torch
import torchvision
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.search import BasicVariantGenerator
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

NORMALIZE = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def load_data(root: str):
    train_tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor(), NORMALIZE])
    train_set = torchvision.datasets.ImageFolder(os.path.join(root, "train"), train_tf)
    val_set = torchvision.datasets.ImageFolder(os.path.join(root, "val"), transforms.Compose([transforms.ToTensor(),
                                                                                           NORMALIZE]))
    return train_set, val_set


def _held_out(val_set) -> torch.Tensor:
    from hpo_cls.promote.val_split import selection_mask

    names = [f"{Path(path).parent.name}/{Path(path).name}" for path, _ in val_set.samples]
    return torch.from_numpy(~selection_mask(names, [label for _, label in val_set.samples]))


def train_cifar(config: dict, root: str, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
    train_set, val_set = load_data(root)
    held_out = _held_out(val_set)
    # not `train_set.classes`: cloudpickle would then ship torch.classes with the function, and fails
    model = torchvision.models.resnet18(num_classes=len(train_set.class_to_idx))
    model.fc = nn.Sequential(nn.Dropout(config["dropout"]), model.fc)
    criterion = nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    train_loader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True)
    val_loader = DataLoader(val_set, batch_size=256)
    for _ in range(epochs):
        model.train()
        for images, labels in train_loader:
            optimizer.zero_grad()
            criterion(model(images), labels).backward()
            optimizer.step()
        model.eval()
        correct, loss, right = 0, 0.0, []
        with torch.no_grad():
            for images, labels in val_loader:
                outputs = model(images)
                loss += nn.functional.cross_entropy(outputs, labels, reduction="sum").item()
                correct += (outputs.argmax(1) == labels).sum().item()
                right.append(outputs.argmax(1) == labels)
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                       os.path.join(checkpoint_dir, "checkpoint.pt"))
            heldout_acc = torch.cat(right)[held_out].float().mean().item()
            tune.report({"val_acc": correct / len(val_set), "val_loss": loss / len(val_set),
                         "val_heldout_acc": heldout_acc},
                        checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/cifar10-mini")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", default="ray_results")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()

    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False)  # a private local Ray
    search_space = {
        "lr": tune.loguniform(1e-4, 1e-2),
        "dropout": tune.uniform(0.0, 0.5),
        "label_smoothing": tune.uniform(0.0, 0.2),
        "batch_size": args.batch_size,
    }
    trainable = tune.with_parameters(train_cifar, root=str(Path(args.root).resolve()), epochs=args.epochs,
                                     seed=args.seed)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=search_space,
        tune_config=tune.TuneConfig(metric="val_acc", mode="max", num_samples=args.trials,
                                    max_concurrent_trials=args.concurrency,
                                    search_alg=BasicVariantGenerator(random_state=args.seed)),
        run_config=tune.RunConfig(storage_path=str(Path(args.storage).resolve()), verbose=1, callbacks=[
            MLflowLoggerCallback(tracking_uri=args.tracking_uri, experiment_name="stock-sweep")]),
    )
    results = tuner.fit()
    best = results.get_best_result(scope="all")  # the trial with the best epoch
    epochs = best.metrics_dataframe
    at_best = epochs.loc[epochs["val_acc"].idxmax()]
    print(f"best_val_acc={at_best['val_acc']:.4f} heldout_acc_at_best={at_best['val_heldout_acc']:.4f} "
          f"config={best.config}", flush=True)


if __name__ == "__main__":
    main()
