//! The semantic tier's index: per scope, the vectors of kept questions, grouped by the
//! fingerprint of everything but the last user turn, searched by brute force.
//!
//! A search only ever looks inside one group of one scope, so a neighbour shares the tenant and
//! every earlier turn, the system prompt, the tools and the parameters exactly; only the last
//! user message may differ. Vectors of a group lie in one contiguous `Vec<f32>` (a compact
//! layout a dot-product loop runs through quickly). The index is bounded in entries per scope
//! and in bytes in all; the oldest entries go first. Each item points at its answer in the exact
//! tier by key; an item whose answer has expired or been evicted is skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use super::embed::cosine;
use super::key::Digest256;

/// What an item costs beyond its vector and text.
const ITEM_OVERHEAD_BYTES: usize = 96;

/// One kept question.
#[derive(Debug, Clone)]
pub struct Item {
    /// The exact-tier key of its answer.
    pub key: Digest256,
    /// The question's last user message.
    pub text: Arc<str>,
}

#[derive(Default)]
struct Group {
    vectors: Vec<f32>,
    items: Vec<Item>,
}

#[derive(Default)]
struct Scope {
    groups: HashMap<Digest256, Group>,
    /// Insertion order, for eviction: (group, key).
    order: VecDeque<(Digest256, Digest256)>,
}

struct Inner {
    scopes: HashMap<Arc<str>, Scope>,
    /// Every item in insertion order, for the byte bound: (scope, group, key, bytes).
    order: VecDeque<(Arc<str>, Digest256, Digest256, usize)>,
    bytes: usize,
    items: usize,
}

/// A neighbour found.
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub item: Item,
    pub similarity: f32,
}

/// The index. Its vectors' size is set by the first one kept (embedders differ in it).
pub struct Index {
    dim: std::sync::OnceLock<usize>,
    max_per_scope: usize,
    max_bytes: usize,
    inner: RwLock<Inner>,
}

impl Index {
    pub fn new(max_per_scope: usize, max_bytes: usize) -> Index {
        Index {
            dim: std::sync::OnceLock::new(),
            max_per_scope: max_per_scope.max(1),
            max_bytes,
            inner: RwLock::new(Inner {
                scopes: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                items: 0,
            }),
        }
    }

    fn item_bytes(dim: usize, text: &str) -> usize {
        dim * 4 + text.len() + ITEM_OVERHEAD_BYTES
    }

    /// Adds a question; an item with the same key in the group is replaced.
    pub fn insert(&self, scope: &Arc<str>, group: Digest256, vector: &[f32], item: Item) {
        let dim = *self.dim.get_or_init(|| vector.len());
        if vector.len() != dim || dim == 0 {
            return;
        }
        let bytes = Self::item_bytes(dim, &item.text);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        remove(&mut inner, scope, &group, &item.key, dim);
        let key = item.key;
        let s = inner.scopes.entry(scope.clone()).or_default();
        let g = s.groups.entry(group).or_default();
        g.vectors.extend_from_slice(vector);
        g.items.push(item);
        s.order.push_back((group, key));
        let over_scope = (s.order.len() > self.max_per_scope)
            .then(|| s.order.front().copied())
            .flatten();
        inner.order.push_back((scope.clone(), group, key, bytes));
        inner.bytes += bytes;
        inner.items += 1;
        if let Some((g, k)) = over_scope {
            remove(&mut inner, scope, &g, &k, dim);
        }
        while inner.bytes > self.max_bytes {
            let Some((s, g, k, _)) = inner.order.front().cloned() else {
                break;
            };
            remove(&mut inner, &s, &g, &k, dim);
        }
    }

    /// The nearest neighbours of `vector` in one group of one scope with at least
    /// `threshold` similarity, best first, at most `k`.
    pub fn search(&self, scope: &str, group: &Digest256, vector: &[f32], threshold: f32, k: usize) -> Vec<Neighbour> {
        let Some(&dim) = self.dim.get().filter(|d| **d == vector.len()) else {
            return Vec::new();
        };
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(g) = inner.scopes.get(scope).and_then(|s| s.groups.get(group)) else {
            return Vec::new();
        };
        let mut found: Vec<Neighbour> = g
            .vectors
            .chunks_exact(dim)
            .zip(&g.items)
            .filter_map(|(v, item)| {
                let similarity = cosine(v, vector);
                (similarity >= threshold).then(|| Neighbour {
                    item: item.clone(),
                    similarity,
                })
            })
            .collect();
        found.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        found.truncate(k);
        found
    }

    /// Forgets an item (its answer is gone).
    pub fn forget(&self, scope: &Arc<str>, group: &Digest256, key: &Digest256) {
        let Some(&dim) = self.dim.get() else { return };
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        remove(&mut inner, scope, group, key, dim);
    }

    /// Items and their bytes.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (inner.items, inner.bytes)
    }

    /// Items held by one scope.
    pub fn len_of(&self, scope: &str) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .scopes
            .get(scope)
            .map_or(0, |s| s.groups.values().map(|g| g.items.len()).sum())
    }
}

/// Removes one item wherever it is recorded (a no-op if it is not there).
fn remove(inner: &mut Inner, scope: &str, group: &Digest256, key: &Digest256, dim: usize) {
    let Some(s) = inner.scopes.get_mut(scope) else { return };
    let Some(g) = s.groups.get_mut(group) else { return };
    let Some(i) = g.items.iter().position(|it| it.key == *key) else {
        return;
    };
    g.items.swap_remove(i);
    let last = g.vectors.len() / dim - 1;
    if i != last {
        let (head, tail) = g.vectors.split_at_mut(last * dim);
        head[i * dim..(i + 1) * dim].copy_from_slice(&tail[..dim]);
    }
    g.vectors.truncate(last * dim);
    if g.items.is_empty() {
        s.groups.remove(group);
    }
    if let Some(p) = s.order.iter().position(|(gr, k)| gr == group && k == key) {
        s.order.remove(p);
    }
    if s.groups.is_empty() {
        inner.scopes.remove(scope);
    }
    if let Some(p) = inner
        .order
        .iter()
        .position(|(sc, gr, k, _)| &**sc == scope && gr == group && k == key)
    {
        if let Some((_, _, _, bytes)) = inner.order.remove(p) {
            inner.bytes -= bytes;
            inner.items -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(dim: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        v[hot % dim] = 1.0;
        v
    }

    fn item(n: u8) -> Item {
        Item {
            key: [n; 32],
            text: format!("q{n}").into(),
        }
    }

    #[test]
    fn search_stays_in_its_scope_and_group_and_ranks_by_similarity() {
        let ix = Index::new(100, 1 << 20);
        let (a, b): (Arc<str>, Arc<str>) = ("key:a".into(), "key:b".into());
        let g = [1u8; 32];
        ix.insert(&a, g, &unit(4, 0), item(1));
        let mut near = unit(4, 0);
        near[1] = 0.5;
        super::super::embed::normalize(&mut near);
        ix.insert(&a, g, &near, item(2));
        ix.insert(&a, [2u8; 32], &unit(4, 0), item(3));
        ix.insert(&b, g, &unit(4, 0), item(4));
        let found = ix.search("key:a", &g, &unit(4, 0), 0.5, 5);
        let keys: Vec<u8> = found.iter().map(|n| n.item.key[0]).collect();
        assert_eq!(keys, [1, 2], "only scope a, group g, best first");
        assert!(found[0].similarity > found[1].similarity);
        assert!(
            ix.search("key:a", &g, &unit(4, 2), 0.5, 5).is_empty(),
            "below the threshold"
        );
        assert!(ix.search("key:c", &g, &unit(4, 0), 0.0, 5).is_empty());
    }

    #[test]
    fn entries_per_scope_and_bytes_are_bounded_oldest_first() {
        let ix = Index::new(3, 1 << 20);
        let s: Arc<str> = "anonymous".into();
        for n in 0..5u8 {
            ix.insert(&s, [0; 32], &unit(8, n as usize), item(n));
        }
        assert_eq!(ix.len_of("anonymous"), 3);
        let left: Vec<u8> = ix
            .search("anonymous", &[0; 32], &unit(8, 0), -1.0, 10)
            .iter()
            .map(|n| n.item.key[0])
            .collect();
        let mut left = left;
        left.sort();
        assert_eq!(left, [2, 3, 4]);
        let one = 8 * 4 + 2 + ITEM_OVERHEAD_BYTES;
        let small = Index::new(100, one * 2);
        for n in 0..5u8 {
            small.insert(&s, [n % 2; 32], &unit(8, 1), item(n));
        }
        assert_eq!(small.size(), (2, one * 2));
        // Replacing an item does not grow the index; forgetting empties it.
        small.insert(&s, [0; 32], &unit(8, 1), item(4));
        assert_eq!(small.size().0, 2);
        small.forget(&s, &[0; 32], &[4; 32]);
        small.forget(&s, &[1; 32], &[3; 32]);
        assert_eq!(small.size(), (0, 0));
        // A vector of another size is ignored.
        small.insert(&s, [0; 32], &[1.0], item(9));
        assert!(small.search("anonymous", &[0; 32], &[1.0], 0.0, 1).is_empty());
        assert_eq!(small.size().0, 0);
    }
}
