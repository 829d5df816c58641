//! Markdown by headings: a section runs from an ATX heading (`#` to `######`, outside
//! fenced code) to the next one; its symbol path is the chain of headings above it.

use std::rc::Rc;

use sync_core::TokenBudget;

use crate::pack::{Lines, PATH_SEP, Seg};

/// The segments of a Markdown file: whole sections when they fit the budget, else the
/// section's blocks (paragraphs, lists, fenced code), all under the section's path.
pub(crate) fn segments(lines: &Lines<'_>, budget: &TokenBudget) -> Vec<Seg> {
    let n = lines.len();
    // Which lines are headings, and which lie in fenced code.
    let mut fence: Option<(u8, usize)> = None;
    let mut heading = vec![None; n];
    let mut in_code = vec![false; n];
    for (i, slot) in heading.iter_mut().enumerate() {
        let line = lines.slice(i, i + 1);
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let fence_mark = (indent < 4)
            .then(|| {
                let b = trimmed.as_bytes();
                let c = *b.first()?;
                let run = b.iter().take_while(|&&x| x == c).count();
                ((c == b'`' || c == b'~') && run >= 3).then_some((c, run))
            })
            .flatten();
        if let Some((c, len)) = fence {
            in_code[i] = true;
            if let Some((c2, len2)) = fence_mark
                && c2 == c
                && len2 >= len
                && trimmed.trim_start_matches(c as char).trim().is_empty()
            {
                fence = None;
            }
            continue;
        }
        if let Some(mark) = fence_mark {
            fence = Some(mark);
            in_code[i] = true;
            continue;
        }
        if indent < 4 {
            let level = trimmed.bytes().take_while(|&b| b == b'#').count();
            let rest = &trimmed[level..];
            if (1..=6).contains(&level) && (rest.trim().is_empty() || rest.starts_with([' ', '\t']))
            {
                let title = rest.trim().trim_end_matches('#').trim();
                *slot = Some((level, title.chars().take(80).collect::<String>()));
            }
        }
    }

    let mut segs = Vec::new();
    let mut chain: Vec<(usize, String)> = Vec::new();
    let mut start = 0;
    let mut path: Option<Rc<str>> = None;
    let flush = |from: usize, to: usize, path: &Option<Rc<str>>, segs: &mut Vec<Seg>| {
        if from >= to {
            return;
        }
        let header = budget.count(&format!("markdown: {}\n", path.as_deref().unwrap_or("")));
        if header + lines.tokens(from, to) <= budget.max() {
            segs.push(Seg::new(lines, from, to, path.clone(), Some("section")));
            return;
        }
        // Blocks: non-blank lines with the blank lines after them; code fences whole.
        let blank = |i: usize| !in_code[i] && lines.slice(i, i + 1).trim().is_empty();
        let mut a = from;
        for i in from + 1..to {
            if !blank(i) && blank(i - 1) {
                segs.push(Seg::new(lines, a, i, path.clone(), Some("section")));
                a = i;
            }
        }
        segs.push(Seg::new(lines, a, to, path.clone(), Some("section")));
    };
    for (i, h) in heading.iter().enumerate() {
        let Some((level, title)) = h else { continue };
        flush(start, i, &path, &mut segs);
        start = i;
        chain.retain(|(l, _)| l < level);
        chain.push((*level, title.clone()));
        let joined: Vec<&str> = chain.iter().map(|(_, t)| t.as_str()).collect();
        path = Some(joined.join(PATH_SEP).into());
    }
    flush(start, n, &path, &mut segs);
    segs
}
