//! Placing a program's values in one arena by liveness, for every backend: each value lives from
//! the first step that writes it to the last step that touches it, and takes the lowest offset
//! (first fit) not used by a value live at the same time.

/// First and last step of every value of a program.
#[derive(Clone, Debug)]
pub struct Liveness {
    first: Vec<usize>,
    last: Vec<usize>,
}

impl Liveness {
    /// `values` values, none live yet.
    pub fn new(values: usize) -> Liveness {
        Liveness {
            first: vec![usize::MAX; values],
            last: vec![0; values],
        }
    }

    /// Step `step` touches `value`; a write starts its life, any touch extends it.
    pub fn touch(&mut self, step: usize, value: usize, writes: bool) {
        if writes {
            self.first[value] = self.first[value].min(step);
        }
        self.last[value] = self.last[value].max(step);
    }

    /// Offsets (in the units of `sizes`) for every value that is ever written (`None` for the
    /// others), and the arena size they need. A value written at step s never shares space with
    /// anything read at step s.
    pub fn first_fit(&self, sizes: &[usize]) -> (Vec<Option<usize>>, usize) {
        let mut offsets = vec![None; self.first.len()];
        let mut order: Vec<usize> = (0..self.first.len())
            .filter(|&v| self.first[v] != usize::MAX)
            .collect();
        order.sort_by_key(|&v| (self.first[v], v));
        // Live blocks: (offset, size, last use).
        let mut live: Vec<(usize, usize, usize)> = Vec::new();
        let mut top = 0;
        for v in order {
            live.retain(|&(_, _, end)| end >= self.first[v]);
            live.sort_unstable();
            let need = sizes[v];
            let mut at = 0;
            for &(off, len, _) in &live {
                if off >= at + need {
                    break;
                }
                at = at.max(off + len);
            }
            offsets[v] = Some(at);
            live.push((at, need, self.last[v]));
            top = top.max(at + need);
        }
        (offsets, top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_at_once_never_overlap_and_dead_space_is_reused() {
        // v0 written at 0, read at 1; v1 written at 1, read at 2; v2 written at 2.
        let mut l = Liveness::new(4);
        l.touch(0, 0, true);
        l.touch(1, 0, false);
        l.touch(1, 1, true);
        l.touch(2, 1, false);
        l.touch(2, 2, true);
        let (offsets, top) = l.first_fit(&[10, 20, 10, 99]);
        // v1 is written while v0 is read: apart. v2 is written while v1 is read, after v0 died:
        // it takes v0's place.
        assert_eq!(offsets, vec![Some(0), Some(10), Some(0), None]);
        assert_eq!(top, 30);
    }
}
