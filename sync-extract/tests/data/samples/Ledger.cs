using System;
using System.Collections.Generic;

namespace Accounts
{
    /// <summary>A ledger of transactions.</summary>
    public class Ledger
    {
        private readonly List<decimal> entries = new List<decimal>();

        /// <summary>The current balance.</summary>
        public decimal Balance { get; private set; }

        /// <summary>Creates an empty ledger.</summary>
        public Ledger()
        {
            Balance = 0m;
        }

        /// <summary>Records a transaction.</summary>
        [Obsolete("Use Post")]
        public void Record(decimal amount)
        {
            if (amount == 0m)
            {
                throw new ArgumentException("amount must not be zero");
            }
            entries.Add(amount);
            Balance += amount;
        }

        public IEnumerable<decimal> Entries() => entries;
    }

    public interface IAuditor
    {
        void Audit(Ledger ledger);
    }

    public struct Money
    {
        public decimal Amount;
        public string Currency;
    }

    public enum Kind { Credit, Debit }
}
