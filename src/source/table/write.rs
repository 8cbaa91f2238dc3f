//! Rows written back in the input's own format (the failed list).

use super::*;
#[cfg(test)]
use std::io::BufWriter;

/// Writes rows back in their input's format, so that a list of failed rows
/// can be fed back with `-i`: CSV/TSV get the header once, then each row as
/// it was read (its raw text when known, else re-serialized); JSONL the raw
/// line (else the row as JSON); txt the URL. Rows of a parquet input are
/// written as JSONL (see [`Format::written_as`]): name the file `.jsonl`.
pub struct RowWriter {
    pub(super) out: Box<dyn Write + Send>,
    pub(super) format: Format,
    pub(super) columns: Option<Arc<[String]>>,
    /// The field delimiter for CSV/TSV output.
    pub(super) delimiter: Option<u8>,
    pub(super) scratch: Vec<u8>,
}

impl RowWriter {
    /// Creates `path` for rows read in `format`; `header` is the input's
    /// header row ([`Table::header`]), written first for CSV/TSV.
    #[cfg(test)]
    pub fn new(
        path: &Path,
        format: Format,
        header: Option<Arc<[String]>>,
    ) -> io::Result<RowWriter> {
        let file = fs_err::File::create(path)?;
        RowWriter::from_writer(Box::new(BufWriter::new(file)), format, header)
    }

    /// Like [`RowWriter::new`], writing to `out`.
    pub fn from_writer(
        out: Box<dyn Write + Send>,
        format: Format,
        header: Option<Arc<[String]>>,
    ) -> io::Result<RowWriter> {
        let format = format.written_as();
        let delimiter = match format {
            Format::Csv => Some(b','),
            Format::Tsv => Some(b'\t'),
            _ => None,
        };
        let mut writer = RowWriter {
            out,
            format,
            columns: header,
            delimiter,
            scratch: Vec::new(),
        };
        if let Some(columns) = writer.columns.clone() {
            writer.write_fields(columns.iter().map(|c| c.as_str()))?;
        }
        Ok(writer)
    }

    /// Writes one row: `raw` is the record's raw text ([`Record::raw`]),
    /// `url` the item's URL (all a txt list keeps).
    pub fn write(&mut self, raw: Option<&str>, row: &Row, url: &str) -> io::Result<()> {
        match (self.format, raw) {
            (Format::Txt, _) => writeln!(self.out, "{url}"),
            (_, Some(raw)) => writeln!(self.out, "{raw}"),
            (Format::Csv | Format::Tsv, None) => match row {
                Row::Table { values, .. } => self.write_fields(values.iter().map(|v| v.as_str())),
                Row::Json(value) => match self.columns.clone() {
                    Some(columns) => {
                        let values: Vec<String> = columns
                            .iter()
                            .map(|c| row.get(c).map(Cow::into_owned).unwrap_or_default())
                            .collect();
                        self.write_fields(values.iter().map(|v| v.as_str()))
                    }
                    None => self.write_fields(std::iter::once(value.to_string().as_str())),
                },
            },
            (_, None) => {
                serde_json::to_writer(&mut self.out, &row.to_json())?;
                self.out.write_all(b"\n")
            }
        }
    }

    pub(super) fn write_fields<'a>(
        &mut self,
        fields: impl Iterator<Item = &'a str>,
    ) -> io::Result<()> {
        let Some(delimiter) = self.delimiter else {
            return Ok(());
        };
        self.scratch.clear();
        {
            let mut csv = csv::WriterBuilder::new()
                .delimiter(delimiter)
                .buffer_capacity(1024)
                .from_writer(&mut self.scratch);
            csv.write_record(fields)?;
            csv.flush()?;
        }
        self.out.write_all(&self.scratch)
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()
    }
}
