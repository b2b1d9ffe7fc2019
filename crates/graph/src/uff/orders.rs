//! UFF dimension orders: which canonical dimension each stored dimension holds.
//!
//! Canonical orders are `N, C, spatial…` for activations and `K, C, spatial…` for filters (K = output
//! channels). A writer lists, for each stored position, the canonical index it holds; a run of spatial
//! dimensions is written once as `[start, INCREMENT]`. So NHWC is `[0, 2, INCREMENT, 1]` and TensorFlow's
//! HWIO filters are `[2, INCREMENT, 1, 0]`.

use super::schema::{DimensionOrders, ORDER_DECREMENT, ORDER_INCREMENT, ORDER_SPECIAL};

/// Expands a dimension order for a tensor of `rank` dimensions into `perm`, where `perm[stored] =
/// canonical`. The result is always a permutation of `0..rank`.
pub(crate) fn expand(order: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let fixed = order.iter().filter(|&&v| v != ORDER_INCREMENT).count();
    let runs = order.iter().filter(|&&v| v == ORDER_INCREMENT).count();
    if order.contains(&ORDER_DECREMENT) {
        return Err(format!(
            "descending dimension runs are not supported (order {order:?})"
        ));
    }
    if runs > 1 {
        return Err(format!("more than one spatial run in order {order:?}"));
    }
    // A run `[s, INCREMENT]` stands for `rank - (fixed - 1)` dimensions starting at `s`.
    let run_len = if runs == 1 {
        if order.first() == Some(&ORDER_INCREMENT) {
            return Err(format!("order {order:?} starts with INCREMENT"));
        }
        (rank + 1).checked_sub(fixed).ok_or_else(|| {
            format!("order {order:?} has more dimensions than the tensor's {rank}")
        })?
    } else {
        0
    };
    let mut perm = Vec::with_capacity(rank);
    let mut previous: Option<i64> = None;
    for &entry in order {
        if entry == ORDER_INCREMENT {
            let start = previous.ok_or_else(|| format!("order {order:?} starts with INCREMENT"))?;
            // The run's first member is already in `perm`; add the rest.
            perm.pop();
            for k in 0..run_len {
                perm.push(start + k as i64);
            }
        } else {
            perm.push(entry);
        }
        previous = Some(entry);
    }
    if perm.len() != rank {
        return Err(format!(
            "order {order:?} describes {} dimensions, the tensor has {rank}",
            perm.len()
        ));
    }
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    for &p in &perm {
        let idx = usize::try_from(p)
            .ok()
            .filter(|&i| i < rank && !seen[i])
            .ok_or_else(|| format!("order {order:?} is not a permutation of {rank} dimensions"))?;
        seen[idx] = true;
        out.push(idx);
    }
    Ok(out)
}

/// Picks the order list that applies to a tensor of `rank` dimensions: an entry keyed by the exact rank
/// wins over the any-rank `SPECIAL` entry.
pub(crate) fn select(orders: &DimensionOrders, rank: usize) -> Result<Vec<usize>, String> {
    let exact = i64::try_from(rank).ok().and_then(|r| orders.orders.get(&r));
    let list = exact
        .or_else(|| orders.orders.get(&ORDER_SPECIAL))
        .ok_or_else(|| {
            format!(
                "no dimension order for rank {rank} (keys {:?})",
                orders.orders.keys().collect::<Vec<_>>()
            )
        })?;
    expand(&list.val, rank)
}

/// For `perm[stored] = canonical`, the transpose permutation that turns the stored tensor into canonical
/// order: output dimension `c` reads input dimension `inverse[c]` (ONNX `Transpose` semantics).
pub(crate) fn to_canonical(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (stored, &canonical) in perm.iter().enumerate() {
        inverse[canonical] = stored;
    }
    inverse
}

/// The transpose permutation that turns a canonical tensor back into the stored order.
pub(crate) fn from_canonical(perm: &[usize]) -> Vec<usize> {
    perm.to_vec()
}

pub(crate) fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INC: i64 = ORDER_INCREMENT;

    #[test]
    fn expands_the_documented_orders() {
        assert_eq!(expand(&[0, 1, 2, INC], 4).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(expand(&[0, 2, INC, 1], 4).unwrap(), vec![0, 2, 3, 1]);
        assert_eq!(expand(&[2, INC, 1, 0], 4).unwrap(), vec![2, 3, 1, 0]);
        // Rank 3 (one spatial dim) and rank 5 (three).
        assert_eq!(expand(&[0, 2, INC, 1], 3).unwrap(), vec![0, 2, 1]);
        assert_eq!(expand(&[0, 2, INC, 1], 5).unwrap(), vec![0, 2, 3, 4, 1]);
        // No run at all: fully explicit.
        assert_eq!(expand(&[1, 0], 2).unwrap(), vec![1, 0]);
    }

    #[test]
    fn nhwc_to_nchw_is_the_usual_transpose() {
        let perm = expand(&[0, 2, INC, 1], 4).unwrap();
        assert_eq!(to_canonical(&perm), vec![0, 3, 1, 2]);
        assert_eq!(from_canonical(&perm), vec![0, 2, 3, 1]);
        // HWIO filters to OIHW.
        let perm = expand(&[2, INC, 1, 0], 4).unwrap();
        assert_eq!(to_canonical(&perm), vec![3, 2, 0, 1]);
    }

    #[test]
    fn rejects_malformed_orders() {
        assert!(expand(&[0, 0, 1], 3).is_err());
        assert!(expand(&[INC, 0], 3).is_err());
        assert!(expand(&[0, 2, INC, 1], 1).is_err());
        assert!(expand(&[0, 1, 7], 3).is_err());
        assert!(expand(&[0, -5, 1], 3).is_err());
        assert!(expand(&[0, 2, INC, 1, INC], 6).is_err());
        assert!(expand(&[0, 2, ORDER_DECREMENT], 4).is_err());
    }
}
