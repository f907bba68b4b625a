"""Payloads shaped like real agent tool inputs, shared by the benchmarks."""

from __future__ import annotations

import random
from typing import Any


def three_key_call() -> dict[str, Any]:
    return {"order_id": "ORD-10293", "courier": "shalom", "zone": "yunguyo"}


def order(i: int = 0) -> dict[str, Any]:
    """About 1 KB: an e-commerce order with customer, address and items."""
    return {
        "order_id": f"ORD-{10000 + i}",
        "created_at": "2026-11-26T09:58:36Z",
        "currency": "PEN",
        "customer": {
            "id": f"C-{77000 + i}",
            "name": "María Quispe Mamani",
            "phone": "+51 951 234 567",
            "email": "maria.quispe@example.pe",
            "language": "es",
        },
        "address": {
            "line1": "Jr. Lima 245, Interior 3",
            "district": "Yunguyo",
            "province": "Yunguyo",
            "region": "Puno",
            "country": "PE",
            "reference": "Frente a la plaza de armas, puerta azul",
            "geo": {"lat": -16.2448, "lon": -69.0936},
        },
        "items": [
            {
                "sku": f"SKU-{k:04d}",
                "name": f"Producto número {k}",
                "qty": k % 3 + 1,
                "unit_price": 19.9 + k,
                "discount": 0.1 if k % 2 else 0.0,
            }
            for k in range(4)
        ],
        "shipping": {"method": "home_delivery", "courier": "shalom", "fee": 12.5},
        "notes": "Llamar antes de entregar. Pago contra entrega.",
        "tags": ["whatsapp", "repeat-customer", "priority"],
    }


def float_heavy() -> dict[str, Any]:
    rng = random.Random(7)
    return {
        "message_id": "msg-8812",
        "embedding": [rng.uniform(-1, 1) for _ in range(64)],
        "scores": {f"s{k}": rng.random() * 10 ** rng.randint(-8, 8) for k in range(16)},
        "temperature": 0.7,
    }


def batch() -> dict[str, Any]:
    """About 400 KB: a batch import of orders."""
    return {"batch_id": "B-2026-11-26", "orders": [order(i) for i in range(400)]}
